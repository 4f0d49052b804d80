// 8-lane float vectors for the AVX2 + FMA build of the flash kernel.
//
// Include only from flash_forward_avx2.cpp, after its `#pragma GCC target`:
// everything here has internal linkage, so no AVX2 code can be merged into a
// portable caller by the linker.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "exp2_poly.h"

namespace flash_attn_ext::cpu {
namespace {

struct SimdAvx2 {
  using V = __m256;
  static constexpr int kWidth = 8;
  // 16 registers: 4 keys x 2 vectors = 8 accumulators, 2 query loads and a broadcast.
  static constexpr int kQkRows = 4;
  static constexpr int kQkVecs = 2;
  static constexpr int kPvRows = 4;
  static constexpr int kPvVecs = 2;
  static constexpr const char* kName = "avx2";

  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V x) { _mm256_storeu_ps(p, x); }
  // Lanes [0, n) from p, the rest 0; nothing past p + n is read (n in [0, 8]).
  static V load_n(const float* p, int64_t n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), lane));
  }
  static float reduce_add(V x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  // max(a, b) returning b where b is NaN, so a NaN score is not silently dropped.
  static V max(V a, V b) { return _mm256_max_ps(a, b); }

  // acc + p * v, but acc unchanged where p == 0 (0 * NaN from a hidden key is masked off).
  static V fmadd_nonzero(V p, V v, V acc) {
    const V live = _mm256_cmp_ps(p, _mm256_setzero_ps(), _CMP_NEQ_UQ);
    return _mm256_add_ps(acc, _mm256_and_ps(live, _mm256_mul_ps(p, v)));
  }

  // p * x, but exactly 0 where p == 0 (see SimdAvx512::mul_live).
  static V mul_live(V p, V x) {
    return _mm256_and_ps(_mm256_cmp_ps(p, _mm256_setzero_ps(), _CMP_NEQ_UQ), _mm256_mul_ps(p, x));
  }

  // s + bias, or exactly -inf where bias is -inf (the key is hidden even if s is NaN).
  static V add_bias(V s, V bias) {
    const V neg_inf = _mm256_set1_ps(-__builtin_inff());
    const V hidden = _mm256_cmp_ps(bias, neg_inf, _CMP_EQ_OQ);
    return _mm256_blendv_ps(_mm256_add_ps(s, bias), neg_inf, hidden);
  }

  // Lanes [0, n) set to -inf (n clamped to [0, 8]): the causally hidden queries of one key.
  static V hide_below(V s, int64_t n) {
    if (n <= 0) return s;
    const int k = n >= 8 ? 8 : static_cast<int>(n);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const V hidden = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(k), lane));
    return _mm256_blendv_ps(s, _mm256_set1_ps(-__builtin_inff()), hidden);
  }

  // m, or 0 where m is -inf (see SimdAvx512::finite_or_zero).
  static V finite_or_zero(V m) {
    const V none = _mm256_cmp_ps(m, _mm256_set1_ps(-__builtin_inff()), _CMP_EQ_OQ);
    return _mm256_andnot_ps(none, m);
  }

  // 2^x for x <= 0; exactly 0 below -126.5 (so for -inf), NaN stays NaN.
  static V exp2(V x) {
    x = _mm256_max_ps(_mm256_set1_ps(kExp2Floor), x);
    const V n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const V f = _mm256_sub_ps(x, n);
    V p = _mm256_set1_ps(kExp2Poly[6]);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2Poly[5]));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2Poly[4]));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2Poly[3]));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2Poly[2]));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2Poly[1]));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2Poly[0]));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
  }

  // 8 mask elements as a float bias: bool True -> 0, False -> -inf; doubles rounded to float.
  static V load_bool_bias(const bool* p) {
    const __m256i wide = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    const V masked_off = _mm256_castsi256_ps(_mm256_cmpeq_epi32(wide, _mm256_setzero_si256()));
    return _mm256_and_ps(masked_off, _mm256_set1_ps(-__builtin_inff()));
  }
  static V load_f64(const double* p) {
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(_mm256_loadu_pd(p))),
                                _mm256_cvtpd_ps(_mm256_loadu_pd(p + 4)), 1);
  }
  static int count_neg_inf(V x) {
    return __builtin_popcount(_mm256_movemask_ps(_mm256_cmp_ps(x, _mm256_set1_ps(-__builtin_inff()), _CMP_EQ_OQ)));
  }

  // dst[j][i] = src[i][j] for an 8 x 8 block: row pairs interleaved, 4 x 4 blocks transposed
  // inside each 128-bit half, then the halves swapped across rows.
  static void transpose(const float* src, int64_t lds, float* dst, int64_t ldd) {
    V s[8];
    for (int g = 0; g < 2; ++g) {
      const V r0 = load(src + (4 * g) * lds), r1 = load(src + (4 * g + 1) * lds);
      const V r2 = load(src + (4 * g + 2) * lds), r3 = load(src + (4 * g + 3) * lds);
      const V t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
      const V t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
      s[4 * g + 0] = _mm256_shuffle_ps(t0, t2, 0x44);
      s[4 * g + 1] = _mm256_shuffle_ps(t0, t2, 0xEE);
      s[4 * g + 2] = _mm256_shuffle_ps(t1, t3, 0x44);
      s[4 * g + 3] = _mm256_shuffle_ps(t1, t3, 0xEE);
    }
    for (int k = 0; k < 4; ++k) {
      store(dst + k * ldd, _mm256_permute2f128_ps(s[k], s[4 + k], 0x20));
      store(dst + (4 + k) * ldd, _mm256_permute2f128_ps(s[k], s[4 + k], 0x31));
    }
  }

  static V load_half(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static V load_bf16(const uint16_t* p) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
};

}  // namespace
}  // namespace flash_attn_ext::cpu
