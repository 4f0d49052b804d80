// ldmatrix: a warp loads four 8x8 tiles of 16-bit elements from shared memory straight
// into mma fragment registers. Lanes 8i..8i+7 give the row addresses of tile i; every
// row is 16 contiguous bytes, 16-byte aligned.
#pragma once

#include <cstdint>

namespace flash_attn_ext::cuda::ptx {

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Thread (g, t) receives, of each tile, row g, columns 2t and 2t + 1.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// Transposed: thread (g, t) receives rows 2t and 2t + 1 of column g, which turns a
// row-major (key, feature) V tile into the column-major B operand of P * V.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

}  // namespace flash_attn_ext::cuda::ptx
