// One-lane "vectors" (plain floats): the portable build of the flash kernel,
// for CPUs without AVX2. Same interface as simd_avx512.h and simd_avx2.h.
#pragma once

#include <cstdint>
#include <cstring>

#include "../common/numeric.h"
#include "exp2_poly.h"

namespace flash_attn_ext::cpu {
namespace {

struct SimdScalar {
  using V = float;
  static constexpr int kWidth = 1;
  // 16 accumulators: what x86-64 (16 SSE registers) and most other ISAs hold.
  static constexpr int kQkRows = 4;
  static constexpr int kQkVecs = 4;
  static constexpr int kPvRows = 4;
  static constexpr int kPvVecs = 4;
  static constexpr const char* kName = "portable";

  static V zero() { return 0.0f; }
  static V set1(float x) { return x; }
  static V load(const float* p) { return *p; }
  static void store(float* p, V x) { *p = x; }
  static V load_n(const float* p, int64_t n) { return n > 0 ? *p : 0.0f; }
  static float reduce_add(V x) { return x; }
  static V add(V a, V b) { return a + b; }
  static V sub(V a, V b) { return a - b; }
  static V mul(V a, V b) { return a * b; }
  static V fmadd(V a, V b, V c) { return a * b + c; }
  static V max(V a, V b) { return a > b ? a : b; }
  static V fmadd_nonzero(V p, V v, V acc) { return p != 0.0f ? p * v + acc : acc; }
  static V mul_live(V p, V x) { return p != 0.0f ? p * x : 0.0f; }
  static V add_bias(V s, V bias) { return bias == -__builtin_inff() ? bias : s + bias; }
  static V hide_below(V s, int64_t n) { return n > 0 ? -__builtin_inff() : s; }
  static V finite_or_zero(V m) { return m == -__builtin_inff() ? 0.0f : m; }

  // 2^x for x <= 0 with the same polynomial and flush-to-zero floor as the vector paths.
  static V exp2(V x) {
    if (!(x >= kExp2Floor)) return x != x ? x : 0.0f;
    const float n = __builtin_nearbyintf(x);
    const float f = x - n;
    float p = kExp2Poly[6];
    for (int i = 5; i >= 0; --i) p = p * f + kExp2Poly[i];
    const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, 4);
    return p * scale;
  }

  static V load_bool_bias(const bool* p) { return *p ? 0.0f : -__builtin_inff(); }
  static V load_f64(const double* p) { return static_cast<float>(*p); }
  static int count_neg_inf(V x) { return x == -__builtin_inff(); }
  static void transpose(const float* src, int64_t, float* dst, int64_t) { *dst = *src; }

  static V load_half(const uint16_t* p) { return to_float(Half{*p}); }
  static V load_bf16(const uint16_t* p) { return to_float(BFloat16{*p}); }
};

}  // namespace
}  // namespace flash_attn_ext::cpu
