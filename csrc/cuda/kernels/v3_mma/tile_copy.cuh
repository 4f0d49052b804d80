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
  constexpr int kPer = 16 / sizeof(Elem);  // elements per 16-byte chunk
  constexpr int kChunks = HD / kPer;       // chunks per row
  if constexpr (HD % kPer == 0 && NT % kChunks == 0 && ROWS % (NT / kChunks) == 0) {
    if (vec) {
      // Every thread copies the same column chunk of rows r0, r0 + kRowStep, ...: one source
      // pointer step and a constant shared-memory offset per chunk, instead of dividing the chunk
      // index into (row, column) and rebuilding both addresses (NOTES_v3.md: the generic loop
      // below cost ~15 integer instructions per chunk, ~240 per warp and key tile).
      constexpr int kRowStep = NT / kChunks;
      const int r0 = tid / kChunks, e = (tid % kChunks) * kPer;
      const bool col_ok = e < cols_valid;
      const int64_t step = kRowStep * row_stride;
      const Elem* s = src + r0 * row_stride + e;
      const uint32_t d = ptx::smem_addr(dst + r0 * PITCH + e);
#pragma unroll
      for (int i = 0; i < ROWS / kRowStep; ++i) {
        const bool ok = col_ok && r0 + i * kRowStep < rows_valid;
        ptx::cp_async_16(d + i * kRowStep * PITCH * static_cast<int>(sizeof(Elem)), ok ? s : src, ok ? 16 : 0);
        s += step;
      }
      return;
    }
  }
  if (vec) {
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
