// Host side of TMA: building tensor maps with the driver's cuTensorMapEncodeTiled, found at
// run time through the CUDA runtime (cudaGetDriverEntryPointByVersion) so the extension needs
// no -lcuda link. No torch headers: kernels' launch files and standalone tests include it.
//
// CUDA Driver API, "Tensor Map Object Management". Rules the encoder enforces: the global
// address is 16-byte aligned, every stride a multiple of 16 bytes and < 2^40, box sizes
// 1..256, and under 128-byte swizzle the inner box is at most 128 bytes.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>

#include <cstdint>

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

}  // namespace flash_attn_ext::cuda::tma
