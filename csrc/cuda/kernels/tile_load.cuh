// Cooperative copies of K/V/Q and mask tiles from global into shared memory, as
// float (v1, v2). Consecutive threads take consecutive 16-byte chunks of a row, so
// a warp's loads coalesce; rows past the limit and columns past n become zeros, so
// tail tiles need no guards in the inner loops and read nothing out of bounds.
#pragma once

#include "common.cuh"

namespace flash_attn_ext::cuda {

// dst[r * dst_stride + e] = scale * src[(row0 + r) * src_stride + e] for r < n_rows,
// e < width (a multiple of 8; dst_stride a multiple of 4 so float4 stores align).
template <typename T>
__device__ __forceinline__ void stage_rows(float* dst, int dst_stride, const T* src, int64_t src_stride,
                                           int64_t row0, int64_t row_limit, int n_rows, int n, int width,
                                           bool vec, float scale) {
  const int chunks = width / 8;
  for (int idx = threadIdx.x; idx < n_rows * chunks; idx += blockDim.x) {
    const int r = idx / chunks, c = idx - r * chunks;
    const int64_t row = row0 + r;
    float x[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    if (row < row_limit) load8(src + row * src_stride, 8 * c, n, vec, x);
    float4* d = reinterpret_cast<float4*>(dst + r * dst_stride + 8 * c);
    d[0] = make_float4(x[0] * scale, x[1] * scale, x[2] * scale, x[3] * scale);
    d[1] = make_float4(x[4] * scale, x[5] * scale, x[6] * scale, x[7] * scale);
  }
}

// dst[r * dst_stride + c] = mask bias (log2 units) of query i0 + r and key j0 + c,
// -inf outside i < i_limit, j < j_limit. Threads walk along keys, the mask's
// contiguous dim in the usual layouts.
__device__ __forceinline__ void stage_mask(float* dst, int dst_stride, const FwdParams& p, int64_t base,
                                           int64_t i0, int64_t i_limit, int n_rows, int64_t j0, int64_t j_limit,
                                           int n_keys) {
  for (int idx = threadIdx.x; idx < n_rows * n_keys; idx += blockDim.x) {
    const int r = idx / n_keys, c = idx - r * n_keys;
    const int64_t i = i0 + r, j = j0 + c;
    dst[r * dst_stride + c] = i < i_limit && j < j_limit ? mask_bias_log2(p, base + i * p.m_sl + j * p.m_ss) : -INFINITY;
  }
}

}  // namespace flash_attn_ext::cuda
