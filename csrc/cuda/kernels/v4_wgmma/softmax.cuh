// Online softmax on a wgmma accumulator tile (m64 x N, float), in registers.
//
// wgmma's accumulator layout: thread (warp w, lane = 4g + t) of the warpgroup holds, for each
// 8-column block j, acc[4j + 0..1] = row 16w + g, cols 8j + 2t, +1 and acc[4j + 2..3] = row
// 16w + g + 8, same cols. A row is spread over the 4 lanes of a quad, so a row reduction is
// a per-thread loop plus two xor-shuffles. Scores are multiplied by scale * log2(e) first
// (the scale may be negative), then exp2 is one MUFU op per element.
#pragma once

#include <cmath>
#include <cstdint>

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

// Scales s by scale_log2 and hides the entries (row, key) the predicate rejects with -inf.
// row_g is this thread's first row; key0 the tile's first key index.
template <int N, bool MASK, bool CAUSAL>
__device__ __forceinline__ void scale_and_mask(float (&s)[N / 2], float scale_log2, int row_g, int key0, int t,
                                               int key_end_all, int causal_offset) {
#pragma unroll
  for (int j = 0; j < N / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      float x = s[4 * j + e] * scale_log2;
      if constexpr (MASK) {
        const int key = key0 + 8 * j + 2 * t + (e & 1);
        const int row = row_g + (e >> 1) * 8;
        bool hide = key >= key_end_all;
        if constexpr (CAUSAL) hide = hide || key > row + causal_offset;
        if (hide) x = -INFINITY;
      }
      s[4 * j + e] = x;
    }
  }
}

// One online-softmax step: updates the running max m[2] and per-thread partial sum l[2] of
// rows g and g+8, turns s into probabilities exp2(s - m) and returns the factors alpha[2]
// that rescale the output accumulator. A row that has seen only -inf keeps m = -inf; its
// exponent uses 0 instead, so nothing computes -inf - -inf and its p and alpha are 0.
template <int N>
__device__ __forceinline__ void online_softmax(float (&s)[N / 2], float (&m)[2], float (&l)[2], float (&alpha)[2]) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float mx = m[r];
#pragma unroll
    for (int j = 0; j < N / 8; ++j) mx = fmaxf(mx, fmaxf(s[4 * j + 2 * r], s[4 * j + 2 * r + 1]));
    mx = quad_max(mx);
    const float base = mx == -INFINITY ? 0.f : mx;
    alpha[r] = ex2(m[r] - base);
    m[r] = mx;
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < N / 8; ++j) {
      s[4 * j + 2 * r] = ex2(s[4 * j + 2 * r] - base);
      s[4 * j + 2 * r + 1] = ex2(s[4 * j + 2 * r + 1] - base);
      sum += s[4 * j + 2 * r] + s[4 * j + 2 * r + 1];
    }
    l[r] = l[r] * alpha[r] + sum;
  }
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
