// Named CTA barriers (sm_70+): a subset of the CTA's warps synchronises on one of the 16
// hardware barriers without stopping the others.
//
// PTX ISA, "Parallel Synchronization and Communication Instructions: bar, barrier". A barrier
// phase completes when `count` threads (a multiple of 32, counted per warp) have reached it,
// whether by bar.sync (arrive and wait) or bar.arrive (arrive and go on). Id 0 is the one
// __syncthreads uses; callers pick other ids.
#pragma once

#include <cstdint>

namespace flash_attn_ext::cuda::ptx {

__device__ __forceinline__ void named_bar_sync(int id, int count) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

__device__ __forceinline__ void named_bar_arrive(int id, int count) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

// bar.sync that also votes: true in every thread when `pred` held in any of the `count` threads
// (bar.red.or.pred), so that a whole warpgroup can take a branch together.
__device__ __forceinline__ bool named_bar_any(int id, int count, bool pred) {
  uint32_t any;
  asm volatile(
      "{\n"
      "  .reg .pred p, q;\n"
      "  setp.ne.u32 q, %1, 0;\n"
      "  bar.red.or.pred p, %2, %3, q;\n"
      "  selp.u32 %0, 1, 0, p;\n"
      "}\n"
      : "=r"(any)
      : "r"(static_cast<uint32_t>(pred)), "r"(id), "r"(count)
      : "memory");
  return any != 0;
}

}  // namespace flash_attn_ext::cuda::ptx
