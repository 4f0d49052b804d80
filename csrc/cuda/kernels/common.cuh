// Device helpers shared by the CUDA rungs: dtype conversion, 16-byte chunk loads
// with a scalar fallback, the mask bias, block-to-work mapping. CUDA headers and
// params.h only, so every kernel file still compiles with plain nvcc.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "../../common/params.h"

namespace flash_attn_ext::cuda {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
// The lazy running max of the 16-bit tensor-core rungs (v3_mma/softmax.cuh, v4_wgmma/softmax.cuh): a row's
// max moves only when a tile's max passes it by more than this, in exp2 units, so probabilities stay below
// 2^8: far inside float and the 16-bit P types; the output is the same up to rounding (m cancels between O
// and the row sum).
constexpr float kMaxSlack = 8.f;

// Register arrays need compile-time sizes, so head dims are rounded up to one of
// four buckets; run-time guards skip the padding.
inline int head_dim_bucket(int64_t d) { return d <= 32 ? 32 : d <= 64 ? 64 : d <= 128 ? 128 : 256; }

template <typename T> __device__ __forceinline__ float to_float(T x);
template <> __device__ __forceinline__ float to_float<float>(float x) { return x; }
template <> __device__ __forceinline__ float to_float<__half>(__half x) { return __half2float(x); }
template <> __device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// Two packed 16-bit values to floats; both conversions are exact.
template <typename T> __device__ __forceinline__ float2 unpack2(uint32_t w);
template <> __device__ __forceinline__ float2 unpack2<__nv_bfloat16>(uint32_t w) {
  return make_float2(__uint_as_float(w << 16), __uint_as_float(w & 0xffff0000u));
}
template <> __device__ __forceinline__ float2 unpack2<__half>(uint32_t w) {
  __half2 h;
  static_assert(sizeof(h) == sizeof(w), "half2 is 32 bits");
  memcpy(&h, &w, sizeof(w));
  return __half22float2(h);
}

// Two floats rounded to nearest into one register of two 16-bit values (lo in the low half): one
// paired conversion, the operand form of mma.sync / wgmma fragments and of 32-bit stores.
template <typename T> __device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  static_assert(std::is_same<T, __nv_bfloat16>::value || std::is_same<T, __half>::value, "pack2: 16-bit T");
  uint32_t w;
  if constexpr (std::is_same<T, __nv_bfloat16>::value) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    memcpy(&w, &v, sizeof(w));
  } else {
    const __half2 v = __floats2half2_rn(lo, hi);
    memcpy(&w, &v, sizeof(w));
  }
  return w;
}

// True when every row start of a (b, h, l) strided tensor is 16-byte aligned, so
// rows can be read 16 bytes at a time. A storage offset of one element breaks
// this, and the readers then fall back to scalar loads.
__device__ __forceinline__ bool rows_aligned16(const void* base, int64_t sb, int64_t sh, int64_t sl, int elem) {
  const int64_t bytes_mask = 15;
  return (reinterpret_cast<uintptr_t>(base) & 15) == 0 && ((sb * elem) & bytes_mask) == 0 &&
         ((sh * elem) & bytes_mask) == 0 && ((sl * elem) & bytes_mask) == 0;
}

// Elements [e0, e0 + 8) of one row as floats; elements at or past n read as 0.
// vec says the row start is 16-byte aligned (rows_aligned16).
template <typename T>
__device__ __forceinline__ void load8(const T* __restrict__ row, int e0, int n, bool vec, float (&x)[8]) {
  if (vec && e0 + 8 <= n) {
    if constexpr (sizeof(T) == 4) {
      const float4 a = __ldg(reinterpret_cast<const float4*>(row + e0));
      const float4 b = __ldg(reinterpret_cast<const float4*>(row + e0 + 4));
      x[0] = a.x; x[1] = a.y; x[2] = a.z; x[3] = a.w;
      x[4] = b.x; x[5] = b.y; x[6] = b.z; x[7] = b.w;
    } else {
      const uint4 w = __ldg(reinterpret_cast<const uint4*>(row + e0));
      const float2 f0 = unpack2<T>(w.x), f1 = unpack2<T>(w.y), f2 = unpack2<T>(w.z), f3 = unpack2<T>(w.w);
      x[0] = f0.x; x[1] = f0.y; x[2] = f1.x; x[3] = f1.y;
      x[4] = f2.x; x[5] = f2.y; x[6] = f3.x; x[7] = f3.y;
    }
    return;
  }
#pragma unroll
  for (int u = 0; u < 8; ++u) x[u] = e0 + u < n ? to_float(row[e0 + u]) : 0.f;
}

// Stores elements [e0, min(e0 + 8, n)) of one row.
template <typename T>
__device__ __forceinline__ void store8(T* row, int e0, int n, bool vec, const float (&x)[8]) {
  if (vec && e0 + 8 <= n) {
    if constexpr (sizeof(T) == 4) {
      reinterpret_cast<float4*>(row + e0)[0] = make_float4(x[0], x[1], x[2], x[3]);
      reinterpret_cast<float4*>(row + e0)[1] = make_float4(x[4], x[5], x[6], x[7]);
    } else {
      reinterpret_cast<uint4*>(row + e0)[0] =
          make_uint4(pack2<T>(x[0], x[1]), pack2<T>(x[2], x[3]), pack2<T>(x[4], x[5]), pack2<T>(x[6], x[7]));
    }
    return;
  }
#pragma unroll
  for (int u = 0; u < 8; ++u)
    if (e0 + u < n) row[e0 + u] = from_float<T>(x[u]);
}

// The mask element at `offset`, as a bias in log2 units: bool False and float -inf
// give -inf, which callers read as "hidden: do not compute this score".
__device__ __forceinline__ float mask_bias_log2(const FwdParams& p, int64_t offset) {
  switch (p.mask_dtype) {
    case ScalarKind::kBool:
      return static_cast<const uint8_t*>(p.mask)[offset] ? 0.f : -INFINITY;
    case ScalarKind::kFloat32: return static_cast<const float*>(p.mask)[offset] * kLog2e;
    case ScalarKind::kFloat16: return __half2float(static_cast<const __half*>(p.mask)[offset]) * kLog2e;
    case ScalarKind::kBFloat16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(p.mask)[offset]) * kLog2e;
    case ScalarKind::kFloat64: return static_cast<float>(static_cast<const double*>(p.mask)[offset]) * kLog2e;
  }
  return 0.f;
}

// One block's share of the work: query rows [i0, i0 + rows_per_block) of head h in
// batch b. B*H*ceil(L/rows) blocks all sit on grid.x (limit 2^31 - 1, unlike grid.y's
// 65535). Within a head the last query block is launched first: under causal masking
// it has the most keys, and starting the longest blocks early shortens the tail.
struct BlockWork {
  int64_t b, h, hk, i0;
};

__device__ __forceinline__ BlockWork block_work(const FwdParams& p, int rows_per_block) {
  const int64_t q_blocks = (p.L + rows_per_block - 1) / rows_per_block;
  const int64_t bh = blockIdx.x / q_blocks;
  const int64_t qb = q_blocks - 1 - (blockIdx.x - bh * q_blocks);
  BlockWork w;
  w.b = bh / p.H;
  w.h = bh - w.b * p.H;
  w.hk = w.h / p.group;
  w.i0 = qb * rows_per_block;
  return w;
}

inline unsigned int grid_blocks(const FwdParams& p, int rows_per_block) {
  return static_cast<unsigned int>(p.B * p.H * ((p.L + rows_per_block - 1) / rows_per_block));
}

// A kernel whose dynamic shared memory exceeds the 48 KB default must opt in first.
// A failure here is left for the launch check that follows every launch.
template <typename Kernel>
inline void allow_dynamic_smem(Kernel* kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
}

}  // namespace flash_attn_ext::cuda
