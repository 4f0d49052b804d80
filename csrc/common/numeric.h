// Scalar conversions between the storage dtypes and float, without torch or CUDA
// headers, so CPU kernel files stay free of heavy includes.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "params.h"

namespace flash_attn_ext {

struct Half { uint16_t bits; };
struct BFloat16 { uint16_t bits; };

inline float bits_to_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint32_t float_to_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

inline float to_float(BFloat16 x) { return bits_to_float(static_cast<uint32_t>(x.bits) << 16); }

inline BFloat16 to_bfloat16(float f) {
  uint32_t u = float_to_bits(f);
  if (std::isnan(f)) return BFloat16{static_cast<uint16_t>((u >> 16) | 0x40)};  // keep it a quiet NaN
  u += 0x7fff + ((u >> 16) & 1);                                                   // round to nearest even
  return BFloat16{static_cast<uint16_t>(u >> 16)};
}

inline float to_float(Half x) {
  const uint32_t sign = static_cast<uint32_t>(x.bits & 0x8000) << 16;
  const uint32_t exp = (x.bits >> 10) & 0x1f;
  uint32_t man = x.bits & 0x3ff;
  if (exp == 0x1f) return bits_to_float(sign | 0x7f800000u | (man << 13));  // inf / nan
  if (exp != 0) return bits_to_float(sign | ((exp + 112) << 23) | (man << 13));
  if (man == 0) return bits_to_float(sign);
  // Subnormal half: value = man * 2^-24, exact in float.
  const float v = static_cast<float>(man) * 5.9604644775390625e-08f;
  return sign ? -v : v;
}

inline Half to_half(float f) {
  const uint32_t u = float_to_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000);
  const float a = std::fabs(f);
  if (std::isnan(f)) return Half{static_cast<uint16_t>(sign | 0x7e00)};
  if (a >= 65520.0f) return Half{static_cast<uint16_t>(sign | 0x7c00)};  // rounds to inf
  if (a < 6.103515625e-05f) {
    // Subnormal range: multiples of 2^-24, rounded to nearest even by rint.
    const float m = std::nearbyint(a * 16777216.0f);
    return Half{static_cast<uint16_t>(sign | static_cast<uint16_t>(m))};
  }
  uint32_t au = float_to_bits(a);
  au += 0xfff + ((au >> 13) & 1);  // round to nearest even at bit 13
  const uint32_t exp = (au >> 23) - 112;
  const uint32_t man = (au >> 13) & 0x3ff;
  return Half{static_cast<uint16_t>(sign | (exp << 10) | man)};
}

template <typename T> inline float load_float(const T* p);
template <> inline float load_float<float>(const float* p) { return *p; }
template <> inline float load_float<Half>(const Half* p) { return to_float(*p); }
template <> inline float load_float<BFloat16>(const BFloat16* p) { return to_float(*p); }

template <typename T> inline void store_float(T* p, float v);
template <> inline void store_float<float>(float* p, float v) { *p = v; }
template <> inline void store_float<Half>(Half* p, float v) { *p = to_half(v); }
template <> inline void store_float<BFloat16>(BFloat16* p, float v) { *p = to_bfloat16(v); }

// The additive bias one mask element stands for: bool False -> -inf, True -> 0,
// float -> its value. Callers treat a -inf bias as "masked": the score is not computed.
inline double mask_bias(const FwdParams& p, int64_t offset) {
  switch (p.mask_dtype) {
    case ScalarKind::kBool:
      return static_cast<const bool*>(p.mask)[offset] ? 0.0 : -std::numeric_limits<double>::infinity();
    case ScalarKind::kFloat32: return static_cast<const float*>(p.mask)[offset];
    case ScalarKind::kFloat64: return static_cast<const double*>(p.mask)[offset];
    case ScalarKind::kFloat16: return to_float(static_cast<const Half*>(p.mask)[offset]);
    case ScalarKind::kBFloat16: return to_float(static_cast<const BFloat16*>(p.mask)[offset]);
  }
  return 0.0;
}

}  // namespace flash_attn_ext
