// Host side of TMA: building tensor maps with the driver's cuTensorMapEncodeTiled, found at
// run time through the CUDA runtime (cudaGetDriverEntryPointByVersion) so the extension needs
// no -lcuda link. No torch headers: kernels' launch files and standalone tests include it.
//
// CUDA Driver API, "Tensor Map Object Management". Rules the encoder enforces: the global
// address is 16-byte aligned, every stride a multiple of 16 bytes and < 2^40, box sizes
// 1..256, and under 128-byte swizzle the inner box is at most 128 bytes.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>

#include <cstdint>
#include <type_traits>

namespace flash_attn_ext::cuda::tma {

// The driver's encoder, looked up once; nullptr if the driver lacks it (pre-12.0).
inline PFN_cuTensorMapEncodeTiled_v12000 encoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess)
      return static_cast<PFN_cuTensorMapEncodeTiled_v12000>(nullptr);
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  }();
  return fn;
}

// A tiled map of a rank-R tensor (R <= 5). dims[0] is the contiguous dimension;
// strides_bytes[i] is the byte stride of dims[i + 1] (R - 1 entries); box[i] elements per
// copy along dims[i]. Out-of-bounds elements load as zero. Returns false if the encoder is
// missing or rejects the arguments.
inline bool encode_tiled(CUtensorMap* map, CUtensorMapDataType dtype, int rank, const void* base,
                         const uint64_t* dims, const uint64_t* strides_bytes, const uint32_t* box,
                         CUtensorMapSwizzle swizzle) {
  PFN_cuTensorMapEncodeTiled_v12000 fn = encoder();
  if (fn == nullptr) return false;
  cuuint64_t d[5], s[4];
  cuuint32_t b[5], e[5];
  for (int i = 0; i < rank; ++i) {
    d[i] = dims[i];
    b[i] = box[i];
    e[i] = 1;
  }
  for (int i = 0; i + 1 < rank; ++i) s[i] = strides_bytes[i];
  const CUresult r = fn(map, dtype, static_cast<cuuint32_t>(rank), const_cast<void*>(base), d, s, b, e,
                        CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS;
}

// Rows the TMA can read: a 16-byte aligned base and strides (in elements of elem_bytes) that are
// multiples of 16 bytes; a size-1 dimension's stride is never used.
inline bool rows_ok(const void* ptr, int64_t elem_bytes, int64_t s_row, int64_t rows, int64_t s_head, int64_t heads,
                    int64_t s_batch, int64_t batch) {
  auto ok = [&](int64_t stride, int64_t n) { return n == 1 || (stride > 0 && (stride * elem_bytes) % 16 == 0); };
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0 && ok(s_row, rows) && ok(s_head, heads) && ok(s_batch, batch);
}

inline bool rows_ok16(const void* ptr, int64_t s_row, int64_t rows, int64_t s_head, int64_t heads, int64_t s_batch,
                      int64_t batch) {
  return rows_ok(ptr, 2, s_row, rows, s_head, heads, s_batch, batch);
}

// A (batch, heads, rows, E) view (element strides s_*) as a 4-D map, E innermost, boxes of one
// 128-byte row (64 16-bit or 32 float values) x box_rows x 1 x 1 with 128-byte swizzle: the layout
// the wgmma kernels' swizzled descriptors read. Float maps are of type TFLOAT32: the TMA rounds
// each value to TF32 as it loads it (to nearest; with type FLOAT32 the tensor cores drop the low
// bits instead, 3x the error: benchmarks/NOTES_v4.md, float32 step 1). Strides of size-1 dims are irrelevant to the data
// but must still satisfy the encoder, so they are replaced by the packed value.
template <typename T>
bool make_head_map(CUtensorMap* map, const void* base, int64_t E, int64_t rows, int64_t heads, int64_t batch,
                   int64_t s_row, int64_t s_head, int64_t s_batch, uint32_t box_rows) {
  static_assert(sizeof(T) == 2 || std::is_same<T, float>::value, "make_head_map: 16-bit or float elements");
  const int64_t es = sizeof(T);
  if (rows == 1) s_row = E;
  if (heads == 1) s_head = s_row * rows;
  if (batch == 1) s_batch = s_head * heads;
  const uint64_t dims[4] = {static_cast<uint64_t>(E), static_cast<uint64_t>(rows), static_cast<uint64_t>(heads),
                            static_cast<uint64_t>(batch)};
  const uint64_t strides[3] = {static_cast<uint64_t>(s_row * es), static_cast<uint64_t>(s_head * es),
                               static_cast<uint64_t>(s_batch * es)};
  const uint32_t box[4] = {static_cast<uint32_t>(128 / es), box_rows, 1, 1};
  const CUtensorMapDataType dt = std::is_same<T, float>::value           ? CU_TENSOR_MAP_DATA_TYPE_TFLOAT32
                                 : std::is_same<T, __nv_bfloat16>::value ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                                                         : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  return encode_tiled(map, dt, 4, base, dims, strides, box, CU_TENSOR_MAP_SWIZZLE_128B);
}

}  // namespace flash_attn_ext::cuda::tma
