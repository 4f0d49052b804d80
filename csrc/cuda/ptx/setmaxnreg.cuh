// Per-warpgroup register re-allocation (sm_90a).
//
// PTX ISA, "Miscellaneous Instructions: setmaxnreg". Every warp of a warpgroup executes the
// same call (.sync.aligned). N is 24..256 in multiples of 8. .dec gives registers back to the
// CTA's pool; .inc blocks until the pool can supply them. It only acts when the kernel has a
// register cap at entry (__launch_bounds__(threads, 1)); otherwise ptxas warns (C7508).
// A producer warpgroup that only issues TMA needs few registers; consumers holding
// accumulators take what it gave up.
#pragma once

namespace flash_attn_ext::cuda::ptx {

template <int N>
__device__ __forceinline__ void setmaxnreg_dec() {
  static_assert(N >= 24 && N <= 256 && N % 8 == 0, "setmaxnreg: 24..256, multiple of 8");
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}

template <int N>
__device__ __forceinline__ void setmaxnreg_inc() {
  static_assert(N >= 24 && N <= 256 && N % 8 == 0, "setmaxnreg: 24..256, multiple of 8");
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}

}  // namespace flash_attn_ext::cuda::ptx
