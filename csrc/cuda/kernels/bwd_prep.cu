// The backward's pre-pass, shared by every CUDA backward: D = rowsum(dO * O) - dLSE per query
// row, and the float32 dQ accumulator zeroed, in one read of dO and O.
//
// Why a kernel of its own: the ATen expression (dO.float() * O.float()).sum(-1) makes two float32
// copies, a product and a reduction, about 28 bytes of traffic per element where this kernel
// needs 4 (16-bit inputs). At B*N = 16k tokens and hidden 2048 that was ~0.25 ms per backward:
// a fifth of the whole backward at E = 64, N = 1024, causal (benchmarks/NOTES_bwd.md, "The pre-pass
// as a kernel").
//
// Work split: a group of G lanes (a power of two, G * 8 >= Ev) reads one row 8 values per lane
// with 16-byte loads where the rows allow it, so a warp takes 32 / G rows at once (4 at Ev = 64)
// and no lane idles for short rows; the group sums with xor shuffles. The same group then zeroes
// that row of the dQ accumulator.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "../launch.h"
#include "common.cuh"

namespace flash_attn_ext::cuda {
namespace {

constexpr int kPrepThreads = 256;

// group: G lanes per row (a power of two).
template <typename T>
__global__ void __launch_bounds__(kPrepThreads)
    bwd_prep_kernel(const BwdParams p, const float* __restrict__ dlse, float* __restrict__ delta,
                    float* __restrict__ dq_accum, int group) {
  const FwdParams& f = p.fwd;
  const int64_t rows = f.B * f.H * f.L;
  const int E = static_cast<int>(f.E), Ev = static_cast<int>(f.Ev);
  const int lane = threadIdx.x & 31;
  const int sub = lane & (group - 1);  // this lane's place in its row's group
  const int rows_per_warp = 32 / group;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * kPrepThreads + threadIdx.x) / 32;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (kPrepThreads / 32);
  const bool vec_do = rows_aligned16(p.dout, p.do_sb, p.do_sh, p.do_sl, sizeof(T));
  const bool vec_o = rows_aligned16(f.out, f.o_sb, f.o_sh, f.o_sl, sizeof(T));
  // Every lane runs every trip of this loop (the shuffles need the whole warp); lanes past
  // the last row read nothing and write nothing.
  for (int64_t first = warp * rows_per_warp; first < rows; first += warps * rows_per_warp) {
    const int64_t r = first + lane / group;
    const bool live = r < rows;
    float dot = 0.f;
    if (live) {
      const int64_t l = r % f.L, bh = r / f.L, h = bh % f.H, b = bh / f.H;
      const T* dor = static_cast<const T*>(p.dout) + b * p.do_sb + h * p.do_sh + l * p.do_sl;
      const T* orow = static_cast<const T*>(f.out) + b * f.o_sb + h * f.o_sh + l * f.o_sl;
      for (int e0 = sub * 8; e0 < Ev; e0 += group * 8) {
        float x[8], y[8];
        load8(dor, e0, Ev, vec_do, x);
        load8(orow, e0, Ev, vec_o, y);
#pragma unroll
        for (int u = 0; u < 8; ++u) dot = fmaf(x[u], y[u], dot);
      }
    }
    for (int offset = group / 2; offset > 0; offset /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, offset);
    if (!live) continue;
    if (sub == 0) delta[r] = dlse != nullptr ? dot - dlse[r] : dot;
    if (dq_accum != nullptr) {
      float* dq = dq_accum + r * E;
      if (E % 4 == 0) {
        for (int e = sub * 4; e < E; e += group * 4) *reinterpret_cast<float4*>(dq + e) = make_float4(0.f, 0.f, 0.f, 0.f);
      } else {
        for (int e = sub; e < E; e += group) dq[e] = 0.f;
      }
    }
  }
}

}  // namespace

// dout (B, H, L, Ev) and out (B, H, L, Ev), both unit-stride rows -> delta (B, H, L) float32, and
// dq_accum (B, H, L, E) float32 zeroed when not null. dlse (B, H, L) float32 or nullptr.
void launch_bwd_prep(const BwdParams& p, const float* dlse, float* delta, float* dq_accum, cudaStream_t stream) {
  const FwdParams& f = p.fwd;
  const int64_t rows = f.B * f.H * f.L;
  if (rows == 0) return;
  int group = 1;
  while (group < 32 && group * 8 < f.Ev) group *= 2;
  const int64_t warps = (rows + 32 / group - 1) / (32 / group);
  const int64_t blocks = (warps + kPrepThreads / 32 - 1) / (kPrepThreads / 32);
  const unsigned grid = static_cast<unsigned>(blocks < (int64_t{1} << 20) ? blocks : (int64_t{1} << 20));
  switch (f.dtype) {
    case ScalarKind::kFloat16:
      bwd_prep_kernel<__half><<<grid, kPrepThreads, 0, stream>>>(p, dlse, delta, dq_accum, group);
      break;
    case ScalarKind::kBFloat16:
      bwd_prep_kernel<__nv_bfloat16><<<grid, kPrepThreads, 0, stream>>>(p, dlse, delta, dq_accum, group);
      break;
    default:
      bwd_prep_kernel<float><<<grid, kPrepThreads, 0, stream>>>(p, dlse, delta, dq_accum, group);
      break;
  }
}

}  // namespace flash_attn_ext::cuda
