// Warpgroup matrix products (sm_90a): ordering instructions, shared-memory matrix descriptors
// and typed dispatch onto the generated wgmma.mma_async calls in wgmma_ops.cuh.
//
// PTX ISA, chapter "Asynchronous Warpgroup Level Matrix Multiply-Accumulate Instructions":
// wgmma.fence, wgmma.commit_group, wgmma.wait_group, "Matrix Descriptor Format" and
// "Shared Memory Matrix Layout". All four warps of a warpgroup (128 consecutive threads,
// first warp index divisible by 4) execute every call here together (.sync.aligned).
#pragma once

#include <cstdint>
#include <type_traits>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "wgmma_ops.cuh"

namespace flash_attn_ext::cuda::ptx {

// This thread's warpgroup, broadcast from lane 0 so that the compiler knows it is the same across the warp:
// the values derived from it (a consumer warpgroup's rows of a tile and their descriptors) then live in
// uniform registers, where wgmma reads its descriptors from, instead of being computed per thread and moved
// over (R2UR) before every wgmma. NOTES_v4.md, session 14: 105 fewer instructions per two key tiles in the
// E = 128 loop, +1-4% at E = 64 causal, 128 and 256.
__device__ __forceinline__ int warpgroup_index() {
  return __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x / 128), 0);
}

// Orders this thread's earlier register writes (accumulators, RS A fragments) before the
// next wgmma reads them. Needed before the first wgmma of a batch and after other code
// touched the accumulators (online-softmax rescale) or wrote the A registers.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }

// Closes the batch of wgmmas issued since the previous commit into one group.
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }

// Waits until at most N committed groups are still running. Until then their accumulator
// (and RS A) registers and their shared-memory operands must be left alone.
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// The compiler does not know a wgmma writes its accumulators late: this empty asm makes
// each register look read and rewritten here, so no use of it moves above the wait that
// precedes this call, and no write of it moves below a wgmma issued after.
template <int N>
__device__ __forceinline__ void fence_operands(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
template <int N>
__device__ __forceinline__ void fence_operands(uint32_t (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(r[i])::"memory");
}

// Matrix descriptor (PTX "Matrix Descriptor Format"), 64 bits:
//   bits  0-13  start address >> 4 (shared-memory byte address)
//   bits 16-29  leading-dimension byte offset >> 4
//   bits 32-45  stride-dimension byte offset >> 4
//   bits 49-51  base offset (0: every tile base here is 1024-byte aligned)
//   bits 62-63  swizzle mode: 1 = 128-byte swizzle
// With 128-byte swizzle the unit applies the XOR pattern to the absolute address, so a
// descriptor may start inside a swizzle atom (advancing by 32 bytes per k16 step along a
// K-major row) as long as the tile itself starts on a 1024-byte boundary.
//
// K-major 128B-swizzled tile (rows of 64 16-bit values = 128 bytes, as TMA writes it with
// CU_TENSOR_MAP_SWIZZLE_128B): 8-row groups are 1024 bytes apart (stride offset); the
// leading offset is unused because one k16 step never leaves a 128-byte row (set to 1).
//
// MN-major 128B-swizzled tile (each 128-byte row holds 64 consecutive MN values of one k):
// stride offset = bytes between 8-row groups along K (1024 when rows are packed);
// leading offset = bytes between consecutive 64-wide MN chunks.
__device__ __forceinline__ uint64_t make_desc_sw128(uint32_t smem_addr, uint32_t lead_bytes, uint32_t stride_bytes) {
  uint64_t d = 0;
  d |= static_cast<uint64_t>((smem_addr & 0x3FFFF) >> 4);
  d |= static_cast<uint64_t>((lead_bytes >> 4) & 0x3FFF) << 16;
  d |= static_cast<uint64_t>((stride_bytes >> 4) & 0x3FFF) << 32;
  d |= static_cast<uint64_t>(1) << 62;
  return d;
}

__device__ __forceinline__ uint64_t desc_kmajor_sw128(uint32_t smem_addr) {
  return make_desc_sw128(smem_addr, 16, 1024);
}

// The descriptor of the same layout `bytes` further on (a multiple of 16). The start address is the
// lowest field, in 16-byte units, and shared-memory addresses stay below 2^18, so the sum never carries
// out of it: one 32-bit add per k-step where rebuilding the descriptor from the address took about five
// instructions (mask, shift, or, and moves into uniform registers; SASS, nvcc 13.0).
__device__ __forceinline__ uint64_t desc_advance(uint64_t desc, uint32_t bytes) {
  return (desc & 0xFFFFFFFF00000000ull) | static_cast<uint32_t>(static_cast<uint32_t>(desc) + (bytes >> 4));
}

// Typed dispatch: T is __nv_bfloat16 or __half, N the tile width (32, 64, 80, 112, 128, 176, 192 or 256);
// or T = float: TF32 m64nNk8 (N 32, 64 or 128), both operands K-major, one k-step = 8 values = the
// same 32 bytes of a 128-byte swizzled row as a 16-bit k16 step, so descriptors advance alike.
// TRANS_A = 1 (SS only) reads A MN-major: M contiguous in each 128-byte row, the descriptor's
// leading offset the bytes between 64-wide M chunks, its stride offset between 8-row K groups.
template <typename T, int N, int TRANS_B, int TRANS_A = 0>
__device__ __forceinline__ void wgmma_ss(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b, int scale_d) {
  constexpr bool kBf16 = std::is_same<T, __nv_bfloat16>::value;
  if constexpr (std::is_same<T, float>::value) {
    static_assert(TRANS_A == 0 && TRANS_B == 0 && (N == 32 || N == 64 || N == 128), "wgmma_ss tf32: K-major, N 32, 64 or 128");
    if constexpr (N == 32) wgmma_ss_m64n32k8_tf32(d, desc_a, desc_b, scale_d);
    else if constexpr (N == 64) wgmma_ss_m64n64k8_tf32(d, desc_a, desc_b, scale_d);
    else wgmma_ss_m64n128k8_tf32(d, desc_a, desc_b, scale_d);
  } else if constexpr (N == 32) {
    if constexpr (kBf16) wgmma_ss_m64n32k16_bf16<TRANS_B, TRANS_A>(d, desc_a, desc_b, scale_d);
    else wgmma_ss_m64n32k16_f16<TRANS_B, TRANS_A>(d, desc_a, desc_b, scale_d);
  } else if constexpr (N == 64) {
    if constexpr (kBf16) wgmma_ss_m64n64k16_bf16<TRANS_B, TRANS_A>(d, desc_a, desc_b, scale_d);
    else wgmma_ss_m64n64k16_f16<TRANS_B, TRANS_A>(d, desc_a, desc_b, scale_d);
  } else if constexpr (N == 128) {
    if constexpr (kBf16) wgmma_ss_m64n128k16_bf16<TRANS_B, TRANS_A>(d, desc_a, desc_b, scale_d);
    else wgmma_ss_m64n128k16_f16<TRANS_B, TRANS_A>(d, desc_a, desc_b, scale_d);
  } else if constexpr (N == 80) {
    if constexpr (kBf16) wgmma_ss_m64n80k16_bf16<TRANS_B, TRANS_A>(d, desc_a, desc_b, scale_d);
    else wgmma_ss_m64n80k16_f16<TRANS_B, TRANS_A>(d, desc_a, desc_b, scale_d);
  } else if constexpr (N == 112) {
    if constexpr (kBf16) wgmma_ss_m64n112k16_bf16<TRANS_B, TRANS_A>(d, desc_a, desc_b, scale_d);
    else wgmma_ss_m64n112k16_f16<TRANS_B, TRANS_A>(d, desc_a, desc_b, scale_d);
  } else if constexpr (N == 176) {
    if constexpr (kBf16) wgmma_ss_m64n176k16_bf16<TRANS_B, TRANS_A>(d, desc_a, desc_b, scale_d);
    else wgmma_ss_m64n176k16_f16<TRANS_B, TRANS_A>(d, desc_a, desc_b, scale_d);
  } else if constexpr (N == 192) {
    if constexpr (kBf16) wgmma_ss_m64n192k16_bf16<TRANS_B, TRANS_A>(d, desc_a, desc_b, scale_d);
    else wgmma_ss_m64n192k16_f16<TRANS_B, TRANS_A>(d, desc_a, desc_b, scale_d);
  } else {
    static_assert(N == 256, "wgmma_ss: N must be 32, 64, 80, 112, 128, 176, 192 or 256");
    if constexpr (kBf16) wgmma_ss_m64n256k16_bf16<TRANS_B, TRANS_A>(d, desc_a, desc_b, scale_d);
    else wgmma_ss_m64n256k16_f16<TRANS_B, TRANS_A>(d, desc_a, desc_b, scale_d);
  }
}

template <typename T, int N, int TRANS_B>
__device__ __forceinline__ void wgmma_rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t desc_b, int scale_d) {
  constexpr bool kBf16 = std::is_same<T, __nv_bfloat16>::value;
  if constexpr (std::is_same<T, float>::value) {
    static_assert(TRANS_B == 0 && (N == 32 || N == 64 || N == 128), "wgmma_rs tf32: K-major B, N 32, 64 or 128");
    if constexpr (N == 32) wgmma_rs_m64n32k8_tf32(d, a, desc_b, scale_d);
    else if constexpr (N == 64) wgmma_rs_m64n64k8_tf32(d, a, desc_b, scale_d);
    else wgmma_rs_m64n128k8_tf32(d, a, desc_b, scale_d);
  } else if constexpr (N == 32) {
    if constexpr (kBf16) wgmma_rs_m64n32k16_bf16<TRANS_B>(d, a, desc_b, scale_d);
    else wgmma_rs_m64n32k16_f16<TRANS_B>(d, a, desc_b, scale_d);
  } else if constexpr (N == 64) {
    if constexpr (kBf16) wgmma_rs_m64n64k16_bf16<TRANS_B>(d, a, desc_b, scale_d);
    else wgmma_rs_m64n64k16_f16<TRANS_B>(d, a, desc_b, scale_d);
  } else if constexpr (N == 128) {
    if constexpr (kBf16) wgmma_rs_m64n128k16_bf16<TRANS_B>(d, a, desc_b, scale_d);
    else wgmma_rs_m64n128k16_f16<TRANS_B>(d, a, desc_b, scale_d);
  } else if constexpr (N == 80) {
    if constexpr (kBf16) wgmma_rs_m64n80k16_bf16<TRANS_B>(d, a, desc_b, scale_d);
    else wgmma_rs_m64n80k16_f16<TRANS_B>(d, a, desc_b, scale_d);
  } else if constexpr (N == 112) {
    if constexpr (kBf16) wgmma_rs_m64n112k16_bf16<TRANS_B>(d, a, desc_b, scale_d);
    else wgmma_rs_m64n112k16_f16<TRANS_B>(d, a, desc_b, scale_d);
  } else if constexpr (N == 176) {
    if constexpr (kBf16) wgmma_rs_m64n176k16_bf16<TRANS_B>(d, a, desc_b, scale_d);
    else wgmma_rs_m64n176k16_f16<TRANS_B>(d, a, desc_b, scale_d);
  } else if constexpr (N == 192) {
    if constexpr (kBf16) wgmma_rs_m64n192k16_bf16<TRANS_B>(d, a, desc_b, scale_d);
    else wgmma_rs_m64n192k16_f16<TRANS_B>(d, a, desc_b, scale_d);
  } else {
    static_assert(N == 256, "wgmma_rs: N must be 32, 64, 80, 112, 128, 176, 192 or 256");
    if constexpr (kBf16) wgmma_rs_m64n256k16_bf16<TRANS_B>(d, a, desc_b, scale_d);
    else wgmma_rs_m64n256k16_f16<TRANS_B>(d, a, desc_b, scale_d);
  }
}

}  // namespace flash_attn_ext::cuda::ptx
