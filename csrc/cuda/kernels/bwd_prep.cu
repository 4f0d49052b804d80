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

struct PrepArgs {
  const void* dout;
  int64_t do_sb, do_sh, do_sl;
  const void* out;
  int64_t o_sb, o_sh, o_sl;
  const float* dlse;  // (B, H, L) contiguous, or nullptr
  float* delta;       // (B, H, L) contiguous
  float* dq_accum;    // (B, H, L, E) contiguous, or nullptr
  int64_t H, L, rows;
  int E, Ev, group;   // group = G lanes per row
};

template <typename T>
__global__ void __launch_bounds__(kPrepThreads) bwd_prep_kernel(const PrepArgs a) {
  const int lane = threadIdx.x & 31;
  const int sub = lane & (a.group - 1);  // this lane's place in its row's group
  const int rows_per_warp = 32 / a.group;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * kPrepThreads + threadIdx.x) / 32;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (kPrepThreads / 32);
  const bool vec_do = rows_aligned16(a.dout, a.do_sb, a.do_sh, a.do_sl, sizeof(T));
  const bool vec_o = rows_aligned16(a.out, a.o_sb, a.o_sh, a.o_sl, sizeof(T));
  // Every lane runs every trip of this loop (the shuffles need the whole warp); lanes past
  // the last row read nothing and write nothing.
  for (int64_t first = warp * rows_per_warp; first < a.rows; first += warps * rows_per_warp) {
    const int64_t r = first + lane / a.group;
    const bool live = r < a.rows;
    float dot = 0.f;
    if (live) {
      const int64_t l = r % a.L, bh = r / a.L, h = bh % a.H, b = bh / a.H;
      const T* dor = static_cast<const T*>(a.dout) + b * a.do_sb + h * a.do_sh + l * a.do_sl;
      const T* orow = static_cast<const T*>(a.out) + b * a.o_sb + h * a.o_sh + l * a.o_sl;
      for (int e0 = sub * 8; e0 < a.Ev; e0 += a.group * 8) {
        float x[8], y[8];
        load8(dor, e0, a.Ev, vec_do, x);
        load8(orow, e0, a.Ev, vec_o, y);
#pragma unroll
        for (int u = 0; u < 8; ++u) dot = fmaf(x[u], y[u], dot);
      }
    }
    for (int offset = a.group / 2; offset > 0; offset /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, offset);
    if (!live) continue;
    if (sub == 0) a.delta[r] = a.dlse != nullptr ? dot - a.dlse[r] : dot;
    if (a.dq_accum != nullptr) {
      float* dq = a.dq_accum + r * a.E;
      if (a.E % 4 == 0) {
        for (int e = sub * 4; e < a.E; e += a.group * 4) *reinterpret_cast<float4*>(dq + e) = make_float4(0.f, 0.f, 0.f, 0.f);
      } else {
        for (int e = sub; e < a.E; e += a.group) dq[e] = 0.f;
      }
    }
  }
}

}  // namespace

// dout (B, H, L, Ev) and out (B, H, L, Ev), both unit-stride rows -> delta (B, H, L) float32, and
// dq_accum (B, H, L, E) float32 zeroed when not null. dlse (B, H, L) float32 or nullptr.
void launch_bwd_prep(const BwdParams& p, const float* dlse, float* delta, float* dq_accum, cudaStream_t stream) {
  const FwdParams& f = p.fwd;
  PrepArgs a{p.dout, p.do_sb, p.do_sh, p.do_sl, f.out, f.o_sb, f.o_sh, f.o_sl, dlse, delta, dq_accum,
             f.H, f.L, f.B * f.H * f.L, static_cast<int>(f.E), static_cast<int>(f.Ev), 1};
  if (a.rows == 0) return;
  while (a.group < 32 && a.group * 8 < a.Ev) a.group *= 2;
  const int64_t warps = (a.rows + 32 / a.group - 1) / (32 / a.group);
  const int64_t blocks = (warps + kPrepThreads / 32 - 1) / (kPrepThreads / 32);
  const unsigned grid = static_cast<unsigned>(blocks < (int64_t{1} << 20) ? blocks : (int64_t{1} << 20));
  switch (f.dtype) {
    case ScalarKind::kFloat16: bwd_prep_kernel<__half><<<grid, kPrepThreads, 0, stream>>>(a); break;
    case ScalarKind::kBFloat16: bwd_prep_kernel<__nv_bfloat16><<<grid, kPrepThreads, 0, stream>>>(a); break;
    default: bwd_prep_kernel<float><<<grid, kPrepThreads, 0, stream>>>(a); break;
  }
}

}  // namespace flash_attn_ext::cuda
