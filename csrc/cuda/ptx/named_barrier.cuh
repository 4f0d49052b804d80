// Named CTA barriers (sm_70+): a subset of the CTA's warps synchronises on one of the 16
// hardware barriers without stopping the others.
//
// PTX ISA, "Parallel Synchronization and Communication Instructions: bar, barrier". A barrier
// phase completes when `count` threads (a multiple of 32, counted per warp) have reached it,
// whether by bar.sync (arrive and wait) or bar.arrive (arrive and go on). Id 0 is the one
// __syncthreads uses; callers pick other ids.
#pragma once

namespace flash_attn_ext::cuda::ptx {

__device__ __forceinline__ void named_bar_sync(int id, int count) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

__device__ __forceinline__ void named_bar_arrive(int id, int count) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

}  // namespace flash_attn_ext::cuda::ptx
