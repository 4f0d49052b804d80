// run_v4_f16x3<E, CAUSAL>: float32-accurate v4 on fp16 tensor cores (3xF16, kernel_f16x3.cuh), one-item grid.
// Included by the explicit instantiations in csrc/cuda/instantiations/v4_f16x3_*.cu.
#pragma once

#include "kernel_f16x3.cuh"
#include "launch_f32x3.cuh"

namespace flash_attn_ext::cuda::v4 {

// q, k, v (B, H or Hkv, L or S, p.E) float32 with 16-byte aligned rows (v4_wgmma_supports), out (B, H, L, p.E)
// float32, lse (B, H, L) or nullptr; p.E == p.Ev <= E, E in {64, 128} (p.E < E: the padded kernel). Tiles as the
// 3xTF32 kernel's: 128 x 32 at E = 128, 128 x 64 at E = 64. No tensor maps, so it always launches.
template <int E, bool CAUSAL>
bool run_v4_f16x3(const FwdParams& p, cudaStream_t stream) {
  static_assert(E == 64 || E == 128, "v4 3xF16: E in {64, 128}");
  constexpr int kBlockN = E == 128 ? 32 : 64;
  using C = CfgF16x3<E, kBlockN>;
  using CPad = CfgF16x3<E, kBlockN, true>;
  if (p.E < E) return launch_3x<CPad, CAUSAL>(v4_fwd_f16x3_kernel<CPad, CAUSAL>, p, stream);
  return launch_3x<C, CAUSAL>(v4_fwd_f16x3_kernel<C, CAUSAL>, p, stream);
}

}  // namespace flash_attn_ext::cuda::v4
