// Shared-memory loads and stores by 32-bit shared address (sm_70+).
//
// PTX ISA, "Data Movement and Conversion Instructions: ld, st" with the .shared state space. The
// kernels keep tile addresses as 32-bit shared offsets (what wgmma descriptors and TMA take), so these
// wrappers take them directly instead of a generic pointer kept live across the loops. The "memory"
// clobber keeps each access in program order with the barriers and fences around it.
#pragma once

#include <cstdint>

namespace flash_attn_ext::cuda::ptx {

__device__ __forceinline__ void st_shared(uint32_t addr, uint32_t v) {
  asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(addr), "r"(v) : "memory");
}

// Four 32-bit values at addr (16-byte aligned) in one store.
__device__ __forceinline__ void st_shared_v4(uint32_t addr, const uint32_t (&x)[4]) {
  asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(x[0]), "r"(x[1]), "r"(x[2]), "r"(x[3])
               : "memory");
}

__device__ __forceinline__ void ld_shared_v4(uint32_t addr, uint32_t (&x)[4]) {
  asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(x[0]), "=r"(x[1]), "=r"(x[2]), "=r"(x[3])
               : "r"(addr));
}

}  // namespace flash_attn_ext::cuda::ptx
