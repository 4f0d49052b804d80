// run_v4_f32x3<E, CAUSAL>: float32-accurate v4 (3xTF32, kernel_f32x3.cuh) on the one-item grid.
// Included by the explicit instantiations in csrc/cuda/instantiations/v4_tf32x3_*.cu.
#pragma once

#include "kernel_f32x3.cuh"
#include "launch_template.cuh"

namespace flash_attn_ext::cuda::v4 {

// The 3x kernels' arguments: fill_args' and the three inputs with their strides (they read them themselves).
template <class C, bool CAUSAL>
void fill_args_f32x3(const FwdParams& p, ArgsF32x3& a) {
  fill_args<float, C, CAUSAL>(p, a);
  a.q = static_cast<const float*>(p.q);
  a.k = static_cast<const float*>(p.k);
  a.v = static_cast<const float*>(p.v);
  a.q_sb = p.q_sb;
  a.q_sh = p.q_sh;
  a.q_sl = p.q_sl;
  a.k_sb = p.k_sb;
  a.k_sh = p.k_sh;
  a.k_sl = p.k_sl;
  a.v_sb = p.v_sb;
  a.v_sh = p.v_sh;
  a.v_sl = p.v_sl;
}

// A 3x kernel (3xTF32 or 3xF16) on the one-item grid: one CTA per 128 query rows of a (b, h).
template <class C, bool CAUSAL, class K>
bool launch_3x(K kernel, const FwdParams& p, cudaStream_t stream) {
  ArgsF32x3 a;
  fill_args_f32x3<C, CAUSAL>(p, a);
  launch<C>(kernel, a.num_items, C::kSmemBytes, stream, a);
  return true;
}

// q, k, v (B, H or Hkv, L or S, E) float32 with 16-byte aligned rows (v4_wgmma_supports), out (B, H, L, E)
// float32, lse (B, H, L) or nullptr; E in {64, 128}. Tiles: 128 x 32 at E = 128, 128 x 64 at E = 64
// (config.h CfgF32x3 says why). No tensor maps, so it always launches.
template <int E, bool CAUSAL>
bool run_v4_f32x3(const FwdParams& p, cudaStream_t stream) {
  static_assert(E == 64 || E == 128, "v4 3xTF32: E in {64, 128}");
  using C = CfgF32x3<E, E == 128 ? 32 : 64>;
  return launch_3x<C, CAUSAL>(v4_fwd_f32x3_kernel<C, CAUSAL>, p, stream);
}

}  // namespace flash_attn_ext::cuda::v4
