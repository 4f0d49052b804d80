// The vectorised flash backward compiled for AVX-512 (F, BW, VL, DQ) + FMA + F16C.
// Called only after the dispatcher (flash_backward.cpp) has seen these features.
//
// Every header with inline or template code is included before the target region,
// so only this file's own internal-linkage code is compiled for this ISA.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../common/numeric.h"
#include "../common/params.h"
#include "exp2_poly.h"
#include "flash_backward_vec.h"
#include "tile_sizes.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma,avx2,f16c")

#include "simd_avx512.h"
#include "flash_backward_impl.h"

namespace flash_attn_ext::cpu {

void flash_backward_avx512(const BwdParams& bp, const BwdScratch& s, int64_t chunks, int64_t w, void* scratch,
                           float* dq_part) {
  flash_backward_vec<SimdAvx512>(bp, s, chunks, w, scratch, dq_part);
}

}  // namespace flash_attn_ext::cpu

#pragma GCC pop_options
