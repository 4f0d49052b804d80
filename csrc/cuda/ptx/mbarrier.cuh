// Shared-memory mbarriers (sm_90): the completion signal for TMA loads and the hand-off
// between producer and consumer warps.
//
// PTX ISA, "Parallel Synchronization and Communication Instructions: mbarrier". A barrier
// phase completes when its pending arrival count reaches 0 and its transaction count (bytes
// announced with expect_tx, paid off by the TMA's complete_tx) is back to 0; it then flips to
// the next phase with the arrival count reset. Waiters name the phase by its parity bit.
#pragma once

#include <cstdint>

namespace flash_attn_ext::cuda::ptx {

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// mbarrier.init: `count` arrivals complete each phase. One thread initialises; the rest
// must not touch the barrier before a CTA barrier (and fence_mbarrier_init) has passed.
__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}

// mbarrier.arrive.expect_tx: announces `bytes` of incoming transactions, then arrives once.
// The phase cannot complete until the TMA copies that signal this barrier deliver them.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes)
               : "memory");
}

// mbarrier.arrive (release semantics at CTA scope): this thread's earlier shared-memory
// reads and writes happen before whoever observes the phase completion.
__device__ __forceinline__ void mbar_arrive(uint32_t bar_addr) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar_addr) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) { mbar_arrive(smem_addr(bar)); }

// Spins on mbarrier.try_wait.parity until the phase with parity `parity` has completed
// (acquire semantics). try_wait blocks in hardware for a while before returning false, so
// the loop is not a hot spin. A fresh barrier is in phase 0: waiting for parity 1 returns
// at once, waiting for parity 0 blocks until the first phase completes.
// The overloads taking a 32-bit shared address let a caller keep barrier addresses in one
// register each instead of a 64-bit generic pointer.
__device__ __forceinline__ void mbar_wait(uint32_t addr, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(addr), "r"(parity)
        : "memory");
  } while (!done);
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) { mbar_wait(smem_addr(bar), parity); }

}  // namespace flash_attn_ext::cuda::ptx
