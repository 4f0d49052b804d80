// The vectorised flash forward compiled for AVX-512 (F, BW, VL, DQ) + FMA + F16C.
// Called only after the dispatcher (flash_forward.cpp) has seen these features.
//
// Every header with inline or template code is included before the target region,
// so only this file's own internal-linkage code is compiled for AVX-512.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../common/numeric.h"
#include "../common/params.h"
#include "exp2_poly.h"
#include "flash_forward_vec.h"
#include "tile_sizes.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma,avx2,f16c")

#include "simd_avx512.h"
#include "flash_forward_impl.h"

namespace flash_attn_ext::cpu {

void flash_forward_avx512(const FwdParams& p, const VecScratch& s, int64_t work_begin, int64_t work_end,
                          void* scratch) {
  flash_forward_vec<SimdAvx512>(p, s, work_begin, work_end, scratch);
}

}  // namespace flash_attn_ext::cpu

#pragma GCC pop_options
