// bwd_simple: the O(L + S)-memory backward on CUDA cores for every input the forward accepts
// (float16 / bfloat16 / float32 in IEEE float32 arithmetic, E and Ev 1..256, every mask form and the
// float-mask gradient, both causal alignments, GQA, any strides, fully masked rows), on every sm.
// It takes what the tensor-core backward does not: max(E, Ev) in 129..256, float32 with
// float32_precision='ieee', devices below sm80 (api.cu, choose_cuda_backward).
//
// What it is: FlashAttention-2's split on CUDA cores, twice. dkdv_kernel.cuh (key-major: K, V of 16-32
// keys in shared memory, loop over the group's query heads and 8-16-row query tiles) writes dK, dV and
// dS for the mask gradient; dq_kernel.cuh (query-major, the mirror image) writes dQ. P and dS are
// recomputed in both from the saved LSE and D = rowsum(dO O) - dlse (tiles.cuh), so nothing of size
// L x S is stored and no atomics are used: the result is bitwise reproducible, deterministic mode or not.
//
// What it costs: 7 products of L x S x E instead of the dense path's 5 matmuls, in float32 FMAs from
// shared memory (no tensor cores): predicted 3-8 TFLOP/s of useful (5-product) work on the H200, i.e.
// several times slower than cuBLAS's dense backward at sizes where that fits in memory, and a few
// times slower than SDPA's efficient backward; its extra memory is the inputs' gradients only
// (O(L + S) per head), where the dense path needs ~4 float32 (B, H, L, S) matrices (21 GiB at
// N = 4096, H = 16).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <string>

#include "../../launch.h"
#include "../common.cuh"
#include "run.h"
#include "tiles.cuh"

namespace flash_attn_ext::cuda {
namespace {

// The larger of the two CTAs' shared memory (they share one layout) for these head dims.
size_t bwd_simple_smem(const FwdParams& p) {
  const int d = head_dim_bucket(p.E > p.Ev ? p.E : p.Ev);
  if (d <= 128) {
    using Tl = bwd_simple::Tiles<128>;
    return bwd_simple::Layout(p.E, p.Ev, Tl::kBr, Tl::kBc).bytes();
  }
  using Tl = bwd_simple::Tiles<256>;
  return bwd_simple::Layout(p.E, p.Ev, Tl::kBr, Tl::kBc).bytes();
}

}  // namespace

bool bwd_simple_supports(const BwdParams& bp, int max_smem_optin, std::string* why) {
  const FwdParams& p = bp.fwd;
  if (p.dtype != ScalarKind::kFloat16 && p.dtype != ScalarKind::kBFloat16 && p.dtype != ScalarKind::kFloat32) {
    *why = "takes float16, bfloat16 and float32 only";
    return false;
  }
  if ((p.E > p.Ev ? p.E : p.Ev) > 256) { *why = "takes head dims up to 256"; return false; }
  const size_t smem = bwd_simple_smem(p);
  if (smem > static_cast<size_t>(max_smem_optin)) {
    *why = "needs " + std::to_string(smem) + " bytes of shared memory per block, this device grants " +
           std::to_string(max_smem_optin);
    return false;
  }
  // Tiles of at least 8 rows and 16 keys: these bounds cover both kernels' 1-D grids.
  if (p.B * p.Hkv * ((p.S + 15) / 16) > INT32_MAX || p.B * p.H * ((p.L + 7) / 8) > INT32_MAX) {
    *why = "needs fewer than 2^31 CTAs";
    return false;
  }
  return true;
}

// dout, q, k, v, lse, delta -> dq, dk, dv (contiguous, the inputs' dtype) and dscores when asked.
void launch_bwd_simple(const BwdParams& bp, cudaStream_t stream) {
  switch (bp.fwd.dtype) {
    case ScalarKind::kFloat16: return bwd_simple::run<__half>(bp, stream);
    case ScalarKind::kBFloat16: return bwd_simple::run<__nv_bfloat16>(bp, stream);
    case ScalarKind::kFloat32: return bwd_simple::run<float>(bp, stream);
    default: return;  // bwd_simple_supports admits only these three
  }
}

}  // namespace flash_attn_ext::cuda
