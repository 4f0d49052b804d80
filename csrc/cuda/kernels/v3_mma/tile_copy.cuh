// Global -> shared copies of one (rows x HD) tile into a padded row-major buffer.
// Rows past rows_valid and columns past cols_valid become zeros, so padded head dims and
// sequence tails feed exact zeros (never stale or NaN data) into the tensor cores.
#pragma once

#include <cstdint>

#include "../../ptx/cp_async.cuh"
#include "../../ptx/ldmatrix.cuh"

namespace flash_attn_ext::cuda::v3 {

template <typename Elem, int ROWS, int HD, int PITCH, int NT>
__device__ __forceinline__ void copy_tile(Elem* dst, const Elem* src, int64_t row_stride, int rows_valid,
                                          int cols_valid, bool vec, int tid) {
  if (vec) {
    constexpr int kPer = 16 / sizeof(Elem);  // elements per 16-byte chunk
    constexpr int kChunks = HD / kPer;       // chunks per row
    // cols_valid is a multiple of kPer here (the launcher checked), so a chunk is all in or all out.
#pragma unroll 4
    for (int c = tid; c < ROWS * kChunks; c += NT) {
      const int r = c / kChunks, e = (c % kChunks) * kPer;
      const bool ok = r < rows_valid && e < cols_valid;
      const Elem* s = ok ? src + r * row_stride + e : src;
      ptx::cp_async_16(ptx::smem_addr(dst + r * PITCH + e), s, ok ? 16 : 0);
    }
  } else {
    for (int c = tid; c < ROWS * HD; c += NT) {
      const int r = c / HD, e = c % HD;
      Elem x{};
      if (r < rows_valid && e < cols_valid) x = src[r * row_stride + e];
      dst[r * PITCH + e] = x;
    }
  }
}

}  // namespace flash_attn_ext::cuda::v3
