// Online softmax on a wgmma accumulator tile (m64 x N, float), in registers.
//
// wgmma's accumulator layout: thread (warp w, lane = 4g + t) of the warpgroup holds, for each
// 8-column block j, acc[4j + 0..1] = row 16w + g, cols 8j + 2t, +1 and acc[4j + 2..3] = row
// 16w + g + 8, same cols. A row is spread over the 4 lanes of a quad, so a row reduction is
// a per-thread loop plus two xor-shuffles.
// Scores stay raw (Q K^T); the row max is kept in raw units and c = scale * log2(e) enters each
// exponent through one FMA, p = exp2(s c - m c), then exp2 is one MUFU op per element. That needs
// c > 0 (the max of s c is then c times the max of s): the launcher runs a negative scale as |c|
// on -Q and a zero one as a tiny c (launch_template.cuh, prepare()).
#pragma once

#include <cmath>
#include <cstdint>

#include "../common.cuh"

namespace flash_attn_ext::cuda::v4 {

__device__ __forceinline__ float ex2(float x) {
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

// Hides the entries (row, key) the predicate rejects with -inf; the others stay as they are.
// row_g is this thread's first row; key0 the tile's first key index. Only tiles that cross the
// key tail or (causal) a row's diagonal call it. Visible keys form a prefix of each row, so each
// of the thread's two rows gets its last visible key once, relative to the thread's first column,
// and every score costs one compare with a constant and one select.
template <int N, bool CAUSAL>
__device__ __forceinline__ void hide_scores(float (&s)[N / 2], int row_g, int key0, int t, int key_end_all,
                                            int causal_offset) {
  const int base = key0 + 2 * t;
  int last[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    last[r] = key_end_all - 1;
    if constexpr (CAUSAL) last[r] = min(last[r], row_g + 8 * r + causal_offset);
    last[r] -= base;
  }
#pragma unroll
  for (int j = 0; j < N / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e)
      if (8 * j + (e & 1) > last[e >> 1]) s[4 * j + e] = -INFINITY;
  }
}

// Row r's scores of this thread (of rows g and g + 8) into p = exp2(s c - base), in place; returns their sum.
template <int N>
__device__ __forceinline__ float row_exps(float (&s)[N / 2], int r, float c, float base) {
  float sum = 0.f;
#pragma unroll
  for (int j = 0; j < N / 8; ++j) {
    s[4 * j + 2 * r] = ex2(fmaf(s[4 * j + 2 * r], c, -base));
    s[4 * j + 2 * r + 1] = ex2(fmaf(s[4 * j + 2 * r + 1], c, -base));
    sum += s[4 * j + 2 * r] + s[4 * j + 2 * r + 1];
  }
  return sum;
}

// One online-softmax step on raw scores: updates the running max m[2] (raw units) and the
// per-thread partial sum l[2] of rows g and g+8, turns s into probabilities exp2(s c - m c)
// and returns the factors alpha[2] that rescale the output accumulator. A row that has seen only
// -inf keeps m = -inf; its exponent base is 0 instead, so nothing computes -inf - -inf, and its
// p are 0.
// LAZY: the running max moves only when the tile's max passes it by more than kMaxSlack (common.cuh); a row
// whose max stays gets alpha = 1 exactly, and rescale_o (kernel.cuh) skips a warp whose rows all
// stayed. Otherwise the max moves with every tile that raises it.
// EXACT (the float32-accurate kernel, not LAZY): alpha from the two rounded bases, so a tile that leaves
// the max where it was rescales by exactly 1. The fused form m c - base is the rounding error of m c
// instead of 0, and every tile then scales all earlier keys by the same 1 +- 1e-7: a drift along the row
// that grew the 3xTF32 kernel's error with N (4.4e-5 of max |out| at N = 16k; v3_mma/softmax.cuh found
// the same).
// SCALED (the 3xF16 kernel): s holds the scores times 1 / f, f a power of two that keeps c f a normal float;
// the max is scaled by f and the exponents use c f, so the results are exactly those of scores scaled first,
// for two multiplies per row instead of one per score.
template <int N, bool LAZY = false, bool EXACT = false, bool SCALED = false>
__device__ __forceinline__ void online_softmax(float (&s)[N / 2], float (&m)[2], float (&l)[2], float (&alpha)[2],
                                               float c, float f = 1.f) {
  const float cs = SCALED ? c * f : c;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float mx = LAZY || SCALED ? -INFINITY : m[r];
#pragma unroll
    for (int j = 0; j < N / 8; ++j) mx = fmaxf(mx, fmaxf(s[4 * j + 2 * r], s[4 * j + 2 * r + 1]));
    mx = quad_max(mx);
    if constexpr (SCALED) mx = LAZY ? mx * f : fmaxf(m[r], mx * f);
    float base;
    if constexpr (LAZY) {
      // (mx - m) c is +inf when m = -inf and mx is not, NaN (not > slack) when both are -inf.
      const float m_new = (mx - m[r]) * c > kMaxSlack ? mx : m[r];
      base = m_new == -INFINITY ? 0.f : m_new * c;
      alpha[r] = m_new == m[r] ? 1.f : ex2(fmaf(m[r], c, -base));
      m[r] = m_new;
    } else if constexpr (EXACT) {
      base = mx == -INFINITY ? 0.f : __fmul_rn(mx, c);  // __fmul_rn is never fused
      alpha[r] = ex2(__fmul_rn(m[r], c) - base);
      m[r] = mx;
    } else {
      base = mx == -INFINITY ? 0.f : mx * c;
      alpha[r] = ex2(fmaf(m[r], c, -base));
      m[r] = mx;
    }
    l[r] = l[r] * alpha[r] + row_exps<N>(s, r, cs, base);
  }
}

// The online-softmax step without the row max, for tiles after a row's first (kernel.cuh, C::kSkipMax):
// exponentials against the running max as it stands, p = exp2(s c - m c), and this thread's partial row
// sums of the tile. Returns false when a row of this thread has no max yet, or when a partial sum passes
// kSkipMaxSum, i.e. some score lies more than log2(kSkipMaxSum) above the running max (NaN fails too); then
// s holds nothing useful and the caller computes the tile again on online_softmax's path. Otherwise every p
// is at most kSkipMaxSum, which fp16 P holds, and the running max, the O accumulator and l stay as they are
// (alpha 1) but for l += sum. The saving: one max (FMNMX) per score and the row's shuffles.
constexpr float kSkipMaxSum = 32768.f;  // 2^15: P in fp16 reaches 65504

template <int N>
__device__ __forceinline__ bool exps_at_running_max(float (&s)[N / 2], const float (&m)[2], float (&sum)[2],
                                                    float c) {
  bool ok = true;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    sum[r] = row_exps<N>(s, r, c, m[r] * c);
    ok = ok && m[r] != -INFINITY && sum[r] <= kSkipMaxSum;
  }
  return ok;
}

template <int N>
__device__ __forceinline__ void rescale(float (&o)[N / 2], const float (&alpha)[2]) {
#pragma unroll
  for (int j = 0; j < N / 8; ++j) {
    o[4 * j] *= alpha[0];
    o[4 * j + 1] *= alpha[0];
    o[4 * j + 2] *= alpha[1];
    o[4 * j + 3] *= alpha[1];
  }
}

}  // namespace flash_attn_ext::cuda::v4
