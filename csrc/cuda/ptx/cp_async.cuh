// cp.async (sm80+): global -> shared copies that bypass registers and complete in the
// background, tracked per thread in commit groups.
#pragma once

#include <cstdint>

namespace flash_attn_ext::cuda::ptx {

// Copies 16 bytes when src_bytes is 16 and writes 16 zero bytes when it is 0: tails and
// padding become zeros without a branch. Both addresses must be 16-byte aligned; with
// src_bytes 0 nothing is read, but src must still be a valid generic address.
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

// Waits until at most n of this thread's most recent groups are still in flight.
template <int n>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(n));
}

}  // namespace flash_attn_ext::cuda::ptx
