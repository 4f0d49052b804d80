// The flash backward for CPUs without AVX2: the same kernel as the vector builds,
// on one-lane "vectors" (plain floats), compiled for the baseline ISA.
#include "simd_scalar.h"
#include "flash_backward_impl.h"

namespace flash_attn_ext::cpu {

void flash_backward_generic(const BwdParams& bp, const BwdScratch& s, int64_t chunks, int64_t w, void* scratch,
                            float* dq_part) {
  flash_backward_vec<SimdScalar>(bp, s, chunks, w, scratch, dq_part);
}

}  // namespace flash_attn_ext::cpu
