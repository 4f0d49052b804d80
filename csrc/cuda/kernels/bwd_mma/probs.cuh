// Recomputes one probability of the forward from its raw score q.k and the saved LSE:
// P = exp2(s * scale * log2(e) + bias * log2(e) - lse * log2(e)). The caller passes lse2 =
// lse * log2(e), or +inf for a row that saw no key (lse = -inf), so such rows get P = 0
// without ever forming -inf - -inf.
//
// Hidden pairs return exactly 0: sequence tails, the causal rule, a false bool-mask entry
// or a -inf float bias. Masks are read only for pairs that bounds and causality leave
// visible (the forward's "no-read" class), and only in tiles the caller flags as `check`:
// tiles strictly inside the sequences, below the diagonal and without a mask skip all of it.
#pragma once

#include <cstdint>

#include "../../../common/params.h"
#include "../v3_mma/masking.cuh"
#include "../v3_mma/softmax.cuh"

namespace flash_attn_ext::cuda::bwd {

template <bool CAUSAL>
struct ProbRecompute {
  const FwdParams& p;
  int64_t mask_base;  // b * m_sb + h * m_sh

  __device__ __forceinline__ float operator()(float s, int64_t row, int64_t key, float lse2, bool check) const {
    float x = s * p.scale_log2;
    if (check) {
      if (row >= p.L || key >= p.S) return 0.f;
      if (CAUSAL && key > row + p.causal_offset) return 0.f;
      if (p.mask_kind != MaskKind::kNone) {
        const int64_t off = mask_base + row * p.m_sl + key * p.m_ss;
        if (p.mask_kind == MaskKind::kBool) {
          if (__ldg(static_cast<const uint8_t*>(p.mask) + off) == 0) return 0.f;
        } else {
          const float bias = v3::load_bias(p.mask, off, p.mask_dtype);
          if (bias == -INFINITY) return 0.f;
          x = fmaf(bias, 1.4426950408889634f, x);
        }
      }
    }
    return v3::fast_exp2(x - lse2);
  }
};

// dS = P * (dP - D), exactly 0 wherever P is 0: a hidden key's V row may hold NaN or Inf,
// which would otherwise reach dS (and dK, dQ) through 0 * NaN.
__device__ __forceinline__ float dscore(float prob, float dp, float d) { return prob == 0.f ? 0.f : prob * (dp - d); }

}  // namespace flash_attn_ext::cuda::bwd
