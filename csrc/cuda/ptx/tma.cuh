// Tensor Memory Accelerator copies (sm_90): one thread asks the TMA unit to move a whole
// box of a tensor between global and shared memory.
//
// PTX ISA, "Data Movement and Conversion Instructions: cp.async.bulk.tensor" (and
// cp.async.bulk.commit_group / wait_group, prefetch.tensormap). The tensor map (shape,
// strides, box size, swizzle) is built on the host with cuTensorMapEncodeTiled and passed
// as a `const __grid_constant__ CUtensorMap` kernel parameter; `tmap` below is its address.
// Coordinates are element indices, innermost dimension first, signed 32-bit: boxes that
// hang past the tensor's edge are filled with zeros on load and clipped on store. A load
// signals `bar` with complete_tx of the full box size (out-of-bounds fill included).
#pragma once

#include <cstdint>

namespace flash_attn_ext::cuda::ptx {

__device__ __forceinline__ uint64_t tmap_addr(const void* tmap) { return reinterpret_cast<uint64_t>(tmap); }

// prefetch.tensormap: pulls the descriptor into the cache ahead of the first copy.
__device__ __forceinline__ void tma_prefetch_desc(const void* tmap) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(tmap_addr(tmap)) : "memory");
}

// dst is a shared-memory byte address (1024-aligned for 128-byte swizzle), bar the
// mbarrier's shared address.
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const void* tmap, uint32_t bar, int c0, int c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];\n" ::"r"(
          dst),
      "l"(tmap_addr(tmap)), "r"(bar), "r"(c0), "r"(c1)
      : "memory");
}

__device__ __forceinline__ void tma_load_3d(uint32_t dst, const void* tmap, uint32_t bar, int c0, int c1, int c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], [%2];\n" ::"r"(
          dst),
      "l"(tmap_addr(tmap)), "r"(bar), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}

__device__ __forceinline__ void tma_load_4d(uint32_t dst, const void* tmap, uint32_t bar, int c0, int c1, int c2,
                                            int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5, %6}], "
      "[%2];\n" ::"r"(dst),
      "l"(tmap_addr(tmap)), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
      : "memory");
}

// Shared -> global box store, tracked in bulk async-groups of the issuing thread. The tile
// must have been made visible to the async proxy first (fence_proxy_async_smem + barrier).
__device__ __forceinline__ void tma_store_2d(const void* tmap, uint32_t src, int c0, int c1) {
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%2, %3}], [%1];\n" ::"l"(tmap_addr(tmap)),
               "r"(src), "r"(c0), "r"(c1)
               : "memory");
}

__device__ __forceinline__ void tma_store_4d(const void* tmap, uint32_t src, int c0, int c1, int c2, int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.global.shared::cta.bulk_group [%0, {%2, %3, %4, %5}], [%1];\n" ::"l"(tmap_addr(tmap)),
      "r"(src), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
      : "memory");
}

__device__ __forceinline__ void tma_store_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }

// Waits until at most N store groups are pending; .read only waits until their source shared
// memory has been read (enough to reuse the buffer; the global writes finish on their own
// before the grid completes).
template <int N>
__device__ __forceinline__ void tma_store_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
}
template <int N>
__device__ __forceinline__ void tma_store_wait() {
  asm volatile("cp.async.bulk.wait_group %0;\n" ::"n"(N) : "memory");
}

}  // namespace flash_attn_ext::cuda::ptx
