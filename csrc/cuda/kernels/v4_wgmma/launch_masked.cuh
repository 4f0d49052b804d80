// run_v4_masked<T, E>: one call with a dense bool mask: the Q/K/V maps (as run_v4), the mask
// pre-pass into the caller's workspace (mask_bits.cuh), then the masked kernel on 128 x 128
// tiles with the overlapped loop and pingpong. Included by csrc/cuda/instantiations/v4m_*.cu.
#pragma once

#include "kernel_masked.cuh"
#include "launch_template.cuh"

namespace flash_attn_ext::cuda::v4 {

// Returns false (nothing launched) if a tensor map cannot be encoded; the caller falls back.
template <typename T, int E>
bool run_v4_masked(const FwdParams& p, void* workspace, cudaStream_t stream) {
  using C = Cfg<E, kMaskBM, kMaskBN>;
  const bool causal = p.causal != CausalMode::kNone;
  Args a;
  CUtensorMap tq, tk, tv;
  const bool ok = causal ? prepare<T, C, true>(p, a, tq, tk, &tv) : prepare<T, C, false>(p, a, tq, tk, &tv);
  if (!ok) return false;
  const MaskLayout lay = MaskLayout::make(p.B, p.H, p.L, p.S, p.m_sb, p.m_sh);
  // a.S: the first key outside the K/V maps (keys past the causal reach are cut from them).
  launch_mask_prepass(p.mask, p.m_sb, p.m_sh, p.m_sl, p.m_ss, p.L, p.S, causal, p.causal_offset, a.S, lay,
                      workspace, stream);
  const auto* ws = static_cast<const unsigned char*>(workspace);
  MaskArgs mk;
  mk.bits = reinterpret_cast<const uint32_t*>(ws + lay.bits_off);
  mk.list = reinterpret_cast<const uint32_t*>(ws + lay.list_off);
  mk.count = reinterpret_cast<const int*>(ws + lay.count_off);
  mk.hid = reinterpret_cast<const uint4*>(ws + lay.hid_off);
  mk.MB = static_cast<int>(lay.MB);
  mk.MH = static_cast<int>(lay.MH);
  mk.NT = static_cast<int>(lay.NT);
  mk.reverse = causal ? 1 : 0;
  launch<C>(v4_fwd_masked_kernel<T, C, true>, a.num_items, C::kSmemBytes, stream, tq, tk, tv, a, mk);
  return true;
}

}  // namespace flash_attn_ext::cuda::v4
