// Online softmax on one warp's 16 x BN score fragment (mma accumulator layout: c[0], c[1]
// in row g, c[2], c[3] in row g + 8). Each thread keeps the running max m and a partial
// sum l for its two rows; l is reduced over the quad only once, at the end.
#pragma once

#include <cmath>

#include "../common.cuh"

namespace flash_attn_ext::cuda::v3 {

__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}

__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// Scores s are in units where p = exp2(s * c - m * c). Hidden scores are -inf on entry and
// leave as exactly 0. A row with no visible key so far keeps m = -inf and uses 0 as the
// exp2 base, so (-inf) - (-inf) is never formed. S is overwritten with P.
//
// EXACT_RESCALE (float32 modes): alpha is formed from the two rounded bases, so a tile that
// leaves the row max unchanged rescales by ex2(0) = 1 exactly. Otherwise the compiler fuses
// m * c - base into one FMA whose result is the rounding error of m * c, not 0: every tile then
// scales all earlier keys by the same 1 +- 1e-7, a drift over the key loop that dominated the
// 3xTF32 error (max 4.8e-6 of max|out| at S = 4096; scripts/f32_forward_emulate.py). 16-bit
// modes keep the fused form (bit-identical code; the drift is far below their rounding).
//
// LAZY (16-bit modes): a row's running max moves only when the tile's max passes it by more than
// kMaxSlack (common.cuh) in exp2 units, so p = exp2(s c - m c) stays below 2^8; a row whose max stays gets
// alpha = 1 exactly, and a warp whose rows all kept theirs skips the O rescale (NO x 4 FMULs per
// row pair, 2 per score at E = 128 with 64-key tiles). The output is the same up to rounding: m
// cancels between O and l. (FlashAttention-4's trick; the Hopper rung's step 11 in NOTES_v4.md.)

template <int NB, int NO, bool EXACT_RESCALE = false, bool LAZY = false>
__device__ __forceinline__ void online_softmax(float (&S)[NB][4], float (&O)[NO][4], float (&m)[2], float (&l)[2],
                                               float c) {
  static_assert(!(LAZY && EXACT_RESCALE), "v3 softmax: the lazy max is for the 16-bit modes");
  float alphas[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float mx = -INFINITY;
#pragma unroll
    for (int nb = 0; nb < NB; ++nb) mx = fmaxf(mx, fmaxf(S[nb][2 * r], S[nb][2 * r + 1]));
    mx = quad_max(mx);
    float m_new = fmaxf(m[r], mx);
    // (mx - m) c is +inf when m = -inf and mx is not, NaN (not > slack) when both are -inf.
    if constexpr (LAZY) m_new = (mx - m[r]) * c > kMaxSlack ? m_new : m[r];
    float base, alpha;  // alpha is 0 while the row had seen nothing
    if constexpr (LAZY) {
      base = m_new == -INFINITY ? 0.f : m_new * c;
      alpha = m_new == m[r] ? 1.f : fast_exp2(fmaf(m[r], c, -base));
    } else if constexpr (EXACT_RESCALE) {
      // __fmul_rn is never fused: the previous tile's base, bit for bit.
      base = m_new == -INFINITY ? 0.f : __fmul_rn(m_new, c);
      alpha = fast_exp2(__fmul_rn(m[r], c) - base);
    } else {
      base = m_new == -INFINITY ? 0.f : m_new * c;
      alpha = fast_exp2(m[r] * c - base);
    }
    m[r] = m_new;
    float sum = 0.f;
#pragma unroll
    for (int nb = 0; nb < NB; ++nb) {
      S[nb][2 * r] = fast_exp2(fmaf(S[nb][2 * r], c, -base));
      S[nb][2 * r + 1] = fast_exp2(fmaf(S[nb][2 * r + 1], c, -base));
      sum += S[nb][2 * r] + S[nb][2 * r + 1];
    }
    l[r] = l[r] * alpha + sum;
    alphas[r] = alpha;
  }
  if constexpr (LAZY) {
    if (!__any_sync(0xffffffffu, alphas[0] != 1.f || alphas[1] != 1.f)) return;
  }
#pragma unroll
  for (int no = 0; no < NO; ++no) {
    O[no][0] *= alphas[0];
    O[no][1] *= alphas[0];
    O[no][2] *= alphas[1];
    O[no][3] *= alphas[1];
  }
}

}  // namespace flash_attn_ext::cuda::v3
