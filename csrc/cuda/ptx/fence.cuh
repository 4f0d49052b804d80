// Proxy and initialisation fences (sm_90).
//
// PTX ISA, "Parallel Synchronization and Communication Instructions: membar/fence" and the
// memory-consistency model's "proxies": TMA and wgmma access shared memory through the
// async proxy, ordinary ld/st/stmatrix through the generic proxy; a write in one proxy is
// not ordered with a read in the other without a proxy fence.
#pragma once

namespace flash_attn_ext::cuda::ptx {

// fence.proxy.async.shared::cta: this thread's earlier generic-proxy shared-memory writes
// become visible to later async-proxy reads (a TMA store of a tile written with st.shared,
// an SS wgmma on an operand written by threads). Each writing thread issues it before the
// barrier that publishes the tile.
__device__ __forceinline__ void fence_proxy_async_smem() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// fence.mbarrier_init.release.cluster: makes mbarrier.init visible to the async proxy (the
// TMA unit's complete_tx) and to other CTAs of a cluster. Issued by the initialising
// thread, followed by a CTA barrier.
__device__ __forceinline__ void fence_mbarrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

}  // namespace flash_attn_ext::cuda::ptx
