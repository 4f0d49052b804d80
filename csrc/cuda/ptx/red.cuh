// Fire-and-forget reductions into global memory (no value comes back, so the SM does not wait).
#pragma once

#include <cstdint>

namespace flash_attn_ext::cuda::ptx {

// dst[0..3] += (a, b, c, d) as one 16-byte reduction (sm_90+; dst 16-byte aligned). Below sm_90
// the vector form does not exist and four scalar reductions run instead.
__device__ __forceinline__ void red_add_f32x4(float* dst, float a, float b, float c, float d) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"l"(dst), "f"(a), "f"(b), "f"(c), "f"(d)
               : "memory");
#else
  atomicAdd(dst, a);
  atomicAdd(dst + 1, b);
  atomicAdd(dst + 2, c);
  atomicAdd(dst + 3, d);
#endif
}

}  // namespace flash_attn_ext::cuda::ptx
