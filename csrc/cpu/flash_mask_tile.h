// The mask tile of the vector kernel: mask(i0 + r, j0 + c) for one query block and key tile,
// read through the mask's strides (any broadcast form), as a key-major float bias in log2
// units, and a verdict on the tile: nothing hidden, partly hidden or all hidden; then the
// step that applies it (and the causal cut) to a key-major score tile.
// Include only inside an ISA target region (through flash_forward_impl.h); everything here
// has internal linkage.
#pragma once

#include <cstdint>

#include "../common/numeric.h"
#include "../common/params.h"
#include "flash_tiles.h"

namespace flash_attn_ext::cpu {
namespace {

// ---- Mask tile: bias[c][r] = log2(e) * mask(i0 + r, j0 + c) as a float (bool: 0 or -inf).
template <typename M> inline float mask_to_f32(M x) { return to_f32(x); }
template <> inline float mask_to_f32<bool>(bool x) { return x ? 0.0f : -__builtin_inff(); }
template <> inline float mask_to_f32<double>(double x) { return static_cast<float>(x); }

// W contiguous mask elements as a float vector (overloads on the mask's element type).
template <class Simd> inline typename Simd::V load_mask(const float* m) { return Simd::load(m); }
template <class Simd> inline typename Simd::V load_mask(const double* m) { return Simd::load_f64(m); }
template <class Simd> inline typename Simd::V load_mask(const bool* m) { return Simd::load_bool_bias(m); }
template <class Simd> inline typename Simd::V load_mask(const Half* m) {
  return Simd::load_half(reinterpret_cast<const uint16_t*>(m));
}
template <class Simd> inline typename Simd::V load_mask(const BFloat16* m) {
  return Simd::load_bf16(reinterpret_cast<const uint16_t*>(m));
}

enum class TileMask { kClear, kPartial, kAllHidden };

// Rows of the mask tile are read along the keys (vector loads where contiguous) into
// `rows_tmp` (kBr x kBc, row-major), then transposed W x W at a time into the key-major bias.
template <class Simd, typename M>
TileMask load_bias_typed(const FwdParams& p, const M* m, int64_t rows, int64_t lanes, int64_t cols, float* bias,
                         float* rows_tmp) {
  using V = typename Simd::V;
  constexpr int W = Simd::kWidth;
  const V log2e = Simd::set1(kLog2e);
  int64_t hidden = 0;
  if (p.m_sl == 0) {
    // The same mask row for every query (a key-padding mask): one broadcast per key.
    for (int64_t c = 0; c < cols; ++c) {
      const float x = mask_to_f32(m[c * p.m_ss]) * kLog2e;
      hidden += x == -__builtin_inff() ? rows : 0;
      const V xv = Simd::set1(x);
      for (int64_t r = 0; r < lanes; r += W) Simd::store(bias + c * kBr + r, xv);
    }
  } else {
    const int64_t cols_w = (cols + W - 1) / W * W;
    for (int64_t r = 0; r < lanes; ++r) {
      float* dst = rows_tmp + r * kBc;
      int64_t c = 0;
      if (r < rows) {
        const M* mr = m + r * p.m_sl;
        if (p.m_ss == 1) {
          for (; c + W <= cols; c += W) {
            const V x = Simd::mul(load_mask<Simd>(mr + c), log2e);
            hidden += Simd::count_neg_inf(x);
            Simd::store(dst + c, x);
          }
        }
        for (; c < cols; ++c) {
          dst[c] = mask_to_f32(mr[c * p.m_ss]) * kLog2e;
          hidden += dst[c] == -__builtin_inff();
        }
      }
      for (; c < cols_w; ++c) dst[c] = 0.0f;  // query lanes past the block, keys past the tile
    }
    for (int64_t r = 0; r < lanes; r += W)
      for (int64_t c = 0; c < cols_w; c += W) Simd::transpose(rows_tmp + r * kBc + c, kBc, bias + c * kBr + r, kBr);
  }
  if (hidden == 0) return TileMask::kClear;
  return hidden == rows * cols ? TileMask::kAllHidden : TileMask::kPartial;
}

template <class Simd>
TileMask load_bias(const FwdParams& p, int64_t b, int64_t h, int64_t i0, int64_t rows, int64_t lanes, int64_t j0,
                   int64_t cols, float* bias, float* rows_tmp) {
  const int64_t off = b * p.m_sb + h * p.m_sh + i0 * p.m_sl + j0 * p.m_ss;
  switch (p.mask_dtype) {
    case ScalarKind::kBool: return load_bias_typed<Simd>(p, static_cast<const bool*>(p.mask) + off, rows, lanes, cols, bias, rows_tmp);
    case ScalarKind::kFloat32:
      return load_bias_typed<Simd>(p, static_cast<const float*>(p.mask) + off, rows, lanes, cols, bias, rows_tmp);
    case ScalarKind::kFloat64:
      return load_bias_typed<Simd>(p, static_cast<const double*>(p.mask) + off, rows, lanes, cols, bias, rows_tmp);
    case ScalarKind::kFloat16:
      return load_bias_typed<Simd>(p, static_cast<const Half*>(p.mask) + off, rows, lanes, cols, bias, rows_tmp);
    case ScalarKind::kBFloat16:
      return load_bias_typed<Simd>(p, static_cast<const BFloat16*>(p.mask) + off, rows, lanes, cols, bias, rows_tmp);
  }
  return TileMask::kClear;
}

// ---- Step 2: hide what this tile must not see: add the mask bias, set causally hidden scores to -inf.
// Query lane r (row i0 + r) sees key j0 + c iff j0 + c <= i0 + r + causal_offset.
template <class Simd>
void apply_masks(const FwdParams& p, int64_t i0, int64_t lanes, int64_t j0, int64_t cols, const float* bias,
                 bool causal_cut, float* st) {
  constexpr int W = Simd::kWidth;
  for (int64_t c = 0; c < cols; ++c) {
    float* s = st + c * kBr;
    const int64_t first_visible = j0 + c - p.causal_offset - i0;  // lanes below this are hidden
    for (int64_t r = 0; r < lanes; r += W) {
      typename Simd::V x = Simd::load(s + r);
      if (bias != nullptr) x = Simd::add_bias(x, Simd::load(bias + c * kBr + r));
      if (causal_cut) x = Simd::hide_below(x, first_visible - r);
      Simd::store(s + r, x);
    }
  }
}

}  // namespace
}  // namespace flash_attn_ext::cpu
