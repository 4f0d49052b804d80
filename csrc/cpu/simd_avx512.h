// 16-lane float vectors for the AVX-512 build of the flash kernel.
//
// Include only from flash_forward_avx512.cpp, after its `#pragma GCC target`:
// everything here has internal linkage, so no AVX-512 code can be merged into
// a portable caller by the linker.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "exp2_poly.h"

namespace flash_attn_ext::cpu {
namespace {

struct SimdAvx512 {
  using V = __m512;
  static constexpr int kWidth = 16;
  // Scores: 6 keys x 4 vectors (64 query lanes) = 24 accumulators of the 32 registers,
  // leaving room for the 4 query loads and a broadcast.
  static constexpr int kQkRows = 6;
  static constexpr int kQkVecs = 4;
  // P.V: 6 query rows x 4 vectors (64 output columns), the same register budget.
  static constexpr int kPvRows = 6;
  static constexpr int kPvVecs = 4;
  static constexpr const char* kName = "avx512";

  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V x) { _mm512_storeu_ps(p, x); }
  // Lanes [0, n) from p, the rest 0; nothing past p + n is read (n in [0, 16]).
  static V load_n(const float* p, int64_t n) {
    return _mm512_maskz_loadu_ps(n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1), p);
  }
  static float reduce_add(V x) { return _mm512_reduce_add_ps(x); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  // max(a, b) returning b where b is NaN, so a NaN score is not silently dropped.
  static V max(V a, V b) { return _mm512_max_ps(a, b); }

  // acc + p * v, but acc unchanged where p == 0: a hidden key (p exactly 0) must not
  // bring 0 * NaN into the sum.
  static V fmadd_nonzero(V p, V v, V acc) {
    const __mmask16 live = _mm512_cmp_ps_mask(p, _mm512_setzero_ps(), _CMP_NEQ_UQ);
    return _mm512_mask3_fmadd_ps(p, v, acc, live);
  }

  // p * x, but exactly 0 where p == 0: dS of a hidden key stays 0 even when its dP is NaN
  // (NaN in a hidden V row).
  static V mul_live(V p, V x) {
    return _mm512_maskz_mul_ps(_mm512_cmp_ps_mask(p, _mm512_setzero_ps(), _CMP_NEQ_UQ), p, x);
  }

  // s + bias, or exactly -inf where bias is -inf (the key is hidden even if s is NaN).
  static V add_bias(V s, V bias) {
    const __mmask16 hidden = _mm512_cmp_ps_mask(bias, _mm512_set1_ps(-__builtin_inff()), _CMP_EQ_OQ);
    return _mm512_mask_mov_ps(_mm512_add_ps(s, bias), hidden, _mm512_set1_ps(-__builtin_inff()));
  }

  // Lanes [0, n) set to -inf (n clamped to [0, 16]): the causally hidden queries of one key.
  static V hide_below(V s, int64_t n) {
    if (n <= 0) return s;
    const __mmask16 hidden = n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1);
    return _mm512_mask_mov_ps(s, hidden, _mm512_set1_ps(-__builtin_inff()));
  }

  // m, or 0 where m is -inf: the max to subtract for a query that has seen no key yet,
  // so that exp2(-inf - m) is 0 and never exp2(-inf + inf).
  static V finite_or_zero(V m) {
    const __mmask16 none = _mm512_cmp_ps_mask(m, _mm512_set1_ps(-__builtin_inff()), _CMP_EQ_OQ);
    return _mm512_mask_mov_ps(m, none, _mm512_setzero_ps());
  }

  // 2^x for x <= 0; exactly 0 below -126.5 (so for -inf), NaN stays NaN.
  static V exp2(V x) {
    x = _mm512_max_ps(_mm512_set1_ps(kExp2Floor), x);
    const V n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const V f = _mm512_sub_ps(x, n);
    V p = _mm512_set1_ps(kExp2Poly[6]);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2Poly[5]));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2Poly[4]));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2Poly[3]));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2Poly[2]));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2Poly[1]));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2Poly[0]));
    // Exponent field n + 127; n = -127 gives the bits of 0.0f, hence the exact zero.
    const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
  }

  // 16 mask elements as a float bias: bool True -> 0, False -> -inf; doubles rounded to float.
  static V load_bool_bias(const bool* p) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __mmask16 keep = _mm_test_epi8_mask(bytes, bytes);
    return _mm512_mask_mov_ps(_mm512_set1_ps(-__builtin_inff()), keep, _mm512_setzero_ps());
  }
  static V load_f64(const double* p) {
    const __m256 lo = _mm512_cvtpd_ps(_mm512_loadu_pd(p));
    const __m256 hi = _mm512_cvtpd_ps(_mm512_loadu_pd(p + 8));
    return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
  }
  static int count_neg_inf(V x) {
    return __builtin_popcount(_mm512_cmp_ps_mask(x, _mm512_set1_ps(-__builtin_inff()), _CMP_EQ_OQ));
  }

  // dst[j][i] = src[i][j] for a 16 x 16 block (row strides in floats): pairs of rows are
  // interleaved, then 4 x 4 blocks transposed inside each 128-bit lane, then the lanes
  // gathered across rows with two rounds of 128-bit shuffles.
  static void transpose(const float* src, int64_t lds, float* dst, int64_t ldd) {
    V s[16];
    for (int g = 0; g < 4; ++g) {
      const V r0 = load(src + (4 * g) * lds), r1 = load(src + (4 * g + 1) * lds);
      const V r2 = load(src + (4 * g + 2) * lds), r3 = load(src + (4 * g + 3) * lds);
      const V t0 = _mm512_unpacklo_ps(r0, r1), t1 = _mm512_unpackhi_ps(r0, r1);
      const V t2 = _mm512_unpacklo_ps(r2, r3), t3 = _mm512_unpackhi_ps(r2, r3);
      s[4 * g + 0] = _mm512_shuffle_ps(t0, t2, 0x44);
      s[4 * g + 1] = _mm512_shuffle_ps(t0, t2, 0xEE);
      s[4 * g + 2] = _mm512_shuffle_ps(t1, t3, 0x44);
      s[4 * g + 3] = _mm512_shuffle_ps(t1, t3, 0xEE);
    }
    // s[4g + k], lane L, now holds column 4L + k of rows 4g..4g+3.
    for (int k = 0; k < 4; ++k) {
      const V u0 = _mm512_shuffle_f32x4(s[k], s[4 + k], 0x44), u1 = _mm512_shuffle_f32x4(s[k], s[4 + k], 0xEE);
      const V u2 = _mm512_shuffle_f32x4(s[8 + k], s[12 + k], 0x44), u3 = _mm512_shuffle_f32x4(s[8 + k], s[12 + k], 0xEE);
      store(dst + k * ldd, _mm512_shuffle_f32x4(u0, u2, 0x88));
      store(dst + (4 + k) * ldd, _mm512_shuffle_f32x4(u0, u2, 0xDD));
      store(dst + (8 + k) * ldd, _mm512_shuffle_f32x4(u1, u3, 0x88));
      store(dst + (12 + k) * ldd, _mm512_shuffle_f32x4(u1, u3, 0xDD));
    }
  }

  static V load_half(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static V load_bf16(const uint16_t* p) {
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
  }
};

}  // namespace
}  // namespace flash_attn_ext::cpu
