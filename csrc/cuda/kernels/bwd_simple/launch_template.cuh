// The launch of bwd_simple for one dtype: picks the head-dim bucket and launches the dK/dV kernel
// and the dQ kernel on the same stream (they share no output, so their order does not matter).
// Instantiated once per dtype in inst_*.cu so the three dtypes compile in parallel.
#pragma once

#include <cuda_runtime.h>

#include "dkdv_kernel.cuh"
#include "dq_kernel.cuh"
#include "run.h"

namespace flash_attn_ext::cuda::bwd_simple {

// q (B, H, L, E), k (B, Hkv, S, E), v (B, Hkv, S, Ev), dout (B, H, L, Ev), lse / delta (B, H, L)
// -> dk (B, Hkv, S, E), dv (B, Hkv, S, Ev): grid B * Hkv * ceil(S / kBc) on x;
// -> dq (B, H, L, E): grid B * H * ceil(L / kBr) on x; dscores (B, H, L, S) when asked.
template <typename T, int D>
void launch_bucket(const BwdParams& bp, cudaStream_t stream) {
  using Tl = Tiles<D>;
  const FwdParams& p = bp.fwd;
  const size_t smem = Layout(p.E, p.Ev, Tl::kBr, Tl::kBc).bytes();
  const int64_t n_kblocks = (p.S + Tl::kBc - 1) / Tl::kBc;
  const int64_t n_qblocks = (p.L + Tl::kBr - 1) / Tl::kBr;
  allow_dynamic_smem(dkdv_kernel<T, D>, smem);
  allow_dynamic_smem(dq_kernel<T, D>, smem);
  dkdv_kernel<T, D><<<static_cast<unsigned>(p.B * p.Hkv * n_kblocks), kThreads, smem, stream>>>(bp, n_kblocks);
  dq_kernel<T, D><<<static_cast<unsigned>(p.B * p.H * n_qblocks), kThreads, smem, stream>>>(bp, n_qblocks);
}

template <typename T>
void run(const BwdParams& bp, cudaStream_t stream) {
  const FwdParams& p = bp.fwd;
  switch (head_dim_bucket(p.E > p.Ev ? p.E : p.Ev)) {
    case 32: return launch_bucket<T, 32>(bp, stream);
    case 64: return launch_bucket<T, 64>(bp, stream);
    case 128: return launch_bucket<T, 128>(bp, stream);
    default: return launch_bucket<T, 256>(bp, stream);
  }
}

}  // namespace flash_attn_ext::cuda::bwd_simple
