// Moving tiles between the input/output dtypes and the float scratch of the vector kernel:
// tile sizes, conversions, the query block (transposed or row-major) and the final store.
// Include only inside an ISA target region (through flash_forward_impl.h); everything here
// has internal linkage.
#pragma once

#include <cstdint>

#include "../common/numeric.h"
#include "../common/params.h"
#include "tile_sizes.h"

namespace flash_attn_ext::cpu {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr int64_t kBr = kCpuBlockQ;
constexpr int64_t kBc = kCpuBlockK;

inline int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }

template <typename T> struct IsHalf { static constexpr bool value = false; };
template <> struct IsHalf<Half> { static constexpr bool value = true; };

template <typename T> inline float to_f32(T x);
template <> inline float to_f32<float>(float x) { return x; }
template <> inline float to_f32<Half>(Half x) { return to_float(x); }
template <> inline float to_f32<BFloat16>(BFloat16 x) { return to_float(x); }

// Rows [0, rows) of `cols` elements of T (row stride ld_src) into floats (row stride
// ld_dst), zero-filling columns [cols, ld_dst): the padding lanes must not hold NaN.
template <class Simd, typename T>
void convert_rows(const T* src, int64_t ld_src, int64_t rows, int64_t cols, float* dst, int64_t ld_dst) {
  constexpr int W = Simd::kWidth;
  for (int64_t r = 0; r < rows; ++r) {
    const T* s = src + r * ld_src;
    float* d = dst + r * ld_dst;
    int64_t c = 0;
    if constexpr (W > 1) {
      for (; c + W <= cols; c += W) {
        if constexpr (sizeof(T) == 4) {
          Simd::store(d + c, Simd::load(reinterpret_cast<const float*>(s) + c));
        } else if constexpr (IsHalf<T>::value) {
          Simd::store(d + c, Simd::load_half(reinterpret_cast<const uint16_t*>(s) + c));
        } else {
          Simd::store(d + c, Simd::load_bf16(reinterpret_cast<const uint16_t*>(s) + c));
        }
      }
    }
    for (; c < cols; ++c) d[c] = to_f32(s[c]);
    for (; c < ld_dst; ++c) d[c] = 0.0f;
  }
}

// ---- Step 0: the query block, transposed to (E, Br) and scaled so scores come out in log2 units.
template <typename T>
void load_queries(const FwdParams& p, const T* q, int64_t rows, float* qt) {
  const float scale = p.scale_log2;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t e = 0; e < p.E; ++e) qt[e * kBr + r] = to_f32(q[r * p.q_sl + e]) * scale;
  for (int64_t e = 0; e < p.E; ++e)
    for (int64_t r = rows; r < kBr; ++r) qt[e * kBr + r] = 0.0f;
}

// The same rows kept row-major (stride ldq, zero-padded), for the dot-product path below.
template <typename T>
void load_query_rows(const FwdParams& p, const T* q, int64_t rows, int64_t ldq, float* qr) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t e = 0; e < p.E; ++e) qr[r * ldq + e] = to_f32(q[r * p.q_sl + e]) * p.scale_log2;
    for (int64_t e = p.E; e < ldq; ++e) qr[r * ldq + e] = 0.0f;
  }
}


// ---- Step 6: normalise and store; rows that saw no key give 0 and lse -inf.
template <typename T>
void store_rows(const FwdParams& p, const float* o, int64_t ldo, const float* m, const float* l, int64_t rows, T* out,
                float* lse) {
  for (int64_t r = 0; r < rows; ++r) {
    T* orow = out + r * p.o_sl;
    if (l[r] == 0.0f) {
      for (int64_t e = 0; e < p.Ev; ++e) store_float(orow + e, 0.0f);
      lse[r] = -__builtin_inff();
      continue;
    }
    const float inv = 1.0f / l[r];
    for (int64_t e = 0; e < p.Ev; ++e) store_float(orow + e, o[r * ldo + e] * inv);
    lse[r] = (m[r] + __builtin_log2f(l[r])) * kLn2;
  }
}

}  // namespace
}  // namespace flash_attn_ext::cpu
