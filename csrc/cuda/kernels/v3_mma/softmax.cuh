// Online softmax on one warp's 16 x BN score fragment (mma accumulator layout: c[0], c[1]
// in row g, c[2], c[3] in row g + 8). Each thread keeps the running max m and a partial
// sum l for its two rows; l is reduced over the quad only once, at the end.
#pragma once

#include <cmath>

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
template <int NB, int NO, bool EXACT_RESCALE = false>
__device__ __forceinline__ void online_softmax(float (&S)[NB][4], float (&O)[NO][4], float (&m)[2], float (&l)[2],
                                               float c) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float mx = -INFINITY;
#pragma unroll
    for (int nb = 0; nb < NB; ++nb) mx = fmaxf(mx, fmaxf(S[nb][2 * r], S[nb][2 * r + 1]));
    const float m_new = fmaxf(m[r], quad_max(mx));
    float base, alpha;  // alpha is 0 while the row had seen nothing
    if constexpr (EXACT_RESCALE) {
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
#pragma unroll
    for (int no = 0; no < NO; ++no) {
      O[no][2 * r] *= alpha;
      O[no][2 * r + 1] *= alpha;
    }
  }
}

}  // namespace flash_attn_ext::cuda::v3
