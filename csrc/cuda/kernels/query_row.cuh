// One query row held in registers by one thread (v0, v1), in its storage dtype:
// 16-bit rows take half the registers of a float copy, which is what lets a row of
// 128 elements and its float accumulator fit in one thread. Unpacking is exact.
#pragma once

#include "common.cuh"

namespace flash_attn_ext::cuda {

template <typename T, int D>
struct QueryRow {
  static_assert(D % 8 == 0, "head-dim buckets are multiples of 8");
  uint32_t w[D / 2];  // elements 2i and 2i+1 packed in w[i]

  __device__ __forceinline__ void load(const T* row, int n, bool vec) {
#pragma unroll
    for (int c = 0; c < D / 8; ++c) {
      float x[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
      if (8 * c < n) load8(row, 8 * c, n, vec, x);
#pragma unroll
      for (int u = 0; u < 4; ++u) w[4 * c + u] = pack2<T>(x[2 * u], x[2 * u + 1]);
    }
  }
  __device__ __forceinline__ float2 pair(int i) const { return unpack2<T>(w[i]); }
};

template <int D>
struct QueryRow<float, D> {
  static_assert(D % 8 == 0, "head-dim buckets are multiples of 8");
  float x[D];

  __device__ __forceinline__ void load(const float* row, int n, bool vec) {
#pragma unroll
    for (int c = 0; c < D / 8; ++c) {
      float t[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
      if (8 * c < n) load8(row, 8 * c, n, vec, t);
#pragma unroll
      for (int u = 0; u < 8; ++u) x[8 * c + u] = t[u];
    }
  }
  __device__ __forceinline__ float2 pair(int i) const { return make_float2(x[2 * i], x[2 * i + 1]); }
};

}  // namespace flash_attn_ext::cuda
