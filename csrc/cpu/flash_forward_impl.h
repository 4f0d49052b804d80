// The vectorised flash forward (float32 / float16 / bfloat16 in, float32 math),
// written once over a Simd type (simd_avx512.h, simd_avx2.h, simd_scalar.h).
//
// Layout trick: scores are kept key-major, St[c][r] for key c and query r, with
// the queries of a block in the vector lanes. Then
//   - Q.K^T needs no transposed K: one key element is broadcast against a vector
//     of queries (Q is transposed once per work item instead of K once per tile);
//   - the softmax max and sum of each query run down a column, lane-wise, with no
//     horizontal reductions;
//   - P.V broadcasts P[r][c] = St[c][r] against rows of V.
// Hidden keys (causal, -inf mask, rows past S) get probability exactly 0, and in
// tiles that have any, P.V skips zero probabilities lane by lane, so NaN/Inf in a
// hidden V row never reaches the output.
//
// Included by one .cpp per ISA inside its target region. Everything is a
// template or has internal linkage, and only builtins are used (no std
// templates), so nothing compiled for a wide ISA can be shared with other code.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../common/numeric.h"
#include "flash_forward_vec.h"
#include "flash_mask_tile.h"
#include "flash_pv.h"
#include "flash_scores.h"
#include "flash_tiles.h"

namespace flash_attn_ext::cpu {
namespace {

// ---- Steps 3-4: online softmax for one tile, per query lane: new running max, the factor
// that rescales what was accumulated so far, probabilities (in place of the scores) and their sum.
template <class Simd>
void online_softmax(int64_t lanes, int64_t cols, float* st, float* m, float* l, float* alpha) {
  using V = typename Simd::V;
  constexpr int W = Simd::kWidth;
  for (int64_t r = 0; r < lanes; r += W) {
    V tile_max = Simd::set1(-__builtin_inff());
    for (int64_t c = 0; c < cols; ++c) tile_max = Simd::max(tile_max, Simd::load(st + c * kBr + r));
    const V m_old = Simd::load(m + r);
    const V m_new = Simd::max(m_old, tile_max);
    const V m_sub = Simd::finite_or_zero(m_new);  // a query with nothing visible yet keeps p = 0
    V sum = Simd::zero();
    for (int64_t c = 0; c < cols; ++c) {
      const V pr = Simd::exp2(Simd::sub(Simd::load(st + c * kBr + r), m_sub));
      Simd::store(st + c * kBr + r, pr);
      sum = Simd::add(sum, pr);
    }
    const V a = Simd::exp2(Simd::sub(m_old, m_sub));
    Simd::store(alpha + r, a);
    Simd::store(l + r, Simd::fmadd(Simd::load(l + r), a, sum));
    Simd::store(m + r, m_new);
  }
}

template <class Simd, typename T>
void flash_items(const FwdParams& p, const VecScratch& s, int64_t w_begin, int64_t w_end, void* scratch) {
  static_assert(kBr % (Simd::kQkVecs * Simd::kWidth) == 0, "query block must be whole query panels");
  constexpr int W = Simd::kWidth;
  char* base = static_cast<char*>(scratch);
  float* qt = reinterpret_cast<float*>(base + s.qt);
  float* kc = reinterpret_cast<float*>(base + s.kc);
  float* vc = reinterpret_cast<float*>(base + s.vc);
  float* st = reinterpret_cast<float*>(base + s.st);
  float* bias = reinterpret_cast<float*>(base + s.bias);
  float* mask_rows = reinterpret_cast<float*>(base + s.mask_rows);
  float* o = reinterpret_cast<float*>(base + s.o);
  float* m = reinterpret_cast<float*>(base + s.stats);
  float* l = m + kBr;
  float* alpha = l + kBr;
  const int64_t ldo = s.ld_v, nvec = (p.Ev + W - 1) / W, ld_q = (p.E + W - 1) / W * W;
  // float32 tiles are read in place unless V rows need padding to whole vectors.
  constexpr bool kIsFloat = sizeof(T) == 4;
  const bool v_in_place = kIsFloat && p.Ev % W == 0;
  const bool masked = p.mask_kind != MaskKind::kNone;
  const int64_t q_blocks = (p.L + kBr - 1) / kBr;

  for (int64_t w = w_begin; w < w_end; ++w) {
    const WorkItem it = work_item(p, w, q_blocks);
    const int64_t b = it.b, h = it.h, hk = h / p.group;
    const int64_t i0 = it.qb * kBr, rows = min_i64(kBr, p.L - i0), lanes = (rows + W - 1) / W * W;
    const T* q = static_cast<const T*>(p.q) + b * p.q_sb + h * p.q_sh + i0 * p.q_sl;
    const T* k = static_cast<const T*>(p.k) + b * p.k_sb + hk * p.k_sh;
    const T* v = static_cast<const T*>(p.v) + b * p.v_sb + hk * p.v_sh;

    // A block of a few rows takes the dot-product path, which writes only its rows' lanes; the
    // lanes past them are zeroed once so the lane-wise softmax never reads uninitialised memory
    // there (what it computes in those lanes is never stored).
    const bool dot_rows = rows <= kDotRows;
    if (dot_rows) {
      load_query_rows(p, q, rows, ld_q, qt);
      for (int64_t c = 0; c < kBc; ++c)
        for (int64_t r = rows; r < lanes; ++r) st[c * kBr + r] = 0.0f;
    } else {
      load_queries(p, q, rows, qt);
    }
    for (int64_t r = 0; r < kBr; ++r) {
      m[r] = -__builtin_inff();
      l[r] = 0.0f;
    }
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t e = 0; e < ldo; ++e) o[r * ldo + e] = 0.0f;

    // Keys past what the last row may see are never touched; tiles the first row sees
    // completely need no causal cut.
    const int64_t key_end = p.causal_key_end(i0 + rows - 1);
    const int64_t clear_end = p.causal_key_end(i0);
    for (int64_t j0 = 0; j0 < key_end; j0 += kBc) {
      const int64_t cols = min_i64(kBc, key_end - j0);
      const bool causal_cut = j0 + cols > clear_end;
      TileMask tm = TileMask::kClear;
      if (masked) {
        tm = load_bias<Simd>(p, b, h, i0, rows, lanes, j0, cols, bias, mask_rows);
        if (tm == TileMask::kAllHidden) continue;
      }

      const float* kt;
      int64_t ldk;
      if constexpr (kIsFloat) {
        kt = reinterpret_cast<const float*>(k) + j0 * p.k_sl;
        ldk = p.k_sl;
      } else {
        convert_rows<Simd>(k + j0 * p.k_sl, p.k_sl, cols, p.E, kc, p.E);
        kt = kc;
        ldk = p.E;
      }
      if (dot_rows)
        compute_scores_dot<Simd>(kt, ldk, cols, qt, ld_q, p.E, rows, st);
      else
        compute_scores<Simd>(kt, ldk, cols, qt, p.E, lanes, st);
      if (masked || causal_cut) apply_masks<Simd>(p, i0, lanes, j0, cols, masked ? bias : nullptr, causal_cut, st);
      online_softmax<Simd>(lanes, cols, st, m, l, alpha);

      const float* vt;
      int64_t ldv;
      if (v_in_place) {
        vt = reinterpret_cast<const float*>(v) + j0 * p.v_sl;
        ldv = p.v_sl;
      } else {
        convert_rows<Simd>(v + j0 * p.v_sl, p.v_sl, cols, p.Ev, vc, ldo);
        vt = vc;
        ldv = ldo;
      }
      if (causal_cut || tm == TileMask::kPartial)
        accumulate_pv<Simd, true>(st, rows, cols, vt, ldv, nvec, alpha, o, ldo);
      else
        accumulate_pv<Simd, false>(st, rows, cols, vt, ldv, nvec, alpha, o, ldo);
    }
    T* out = static_cast<T*>(p.out) + b * p.o_sb + h * p.o_sh + i0 * p.o_sl;
    store_rows(p, o, ldo, m, l, rows, out, p.lse + (b * p.H + h) * p.L + i0);
  }
}

// The entry each ISA file exports: picks the input dtype.
template <class Simd>
void flash_forward_vec(const FwdParams& p, const VecScratch& s, int64_t work_begin, int64_t work_end, void* scratch) {
  switch (p.dtype) {
    case ScalarKind::kFloat32: return flash_items<Simd, float>(p, s, work_begin, work_end, scratch);
    case ScalarKind::kFloat16: return flash_items<Simd, Half>(p, s, work_begin, work_end, scratch);
    case ScalarKind::kBFloat16: return flash_items<Simd, BFloat16>(p, s, work_begin, work_end, scratch);
    default: return;
  }
}

}  // namespace
}  // namespace flash_attn_ext::cpu
