// The flash forward for CPUs without AVX2: the same kernel as the vector builds,
// on one-lane "vectors" (plain floats), compiled for the baseline ISA.
#include "simd_scalar.h"
#include "flash_forward_impl.h"

namespace flash_attn_ext::cpu {

void flash_forward_generic(const FwdParams& p, const VecScratch& s, int64_t work_begin, int64_t work_end,
                           void* scratch) {
  flash_forward_vec<SimdScalar>(p, s, work_begin, work_end, scratch);
}

}  // namespace flash_attn_ext::cpu
