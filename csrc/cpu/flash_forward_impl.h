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

// ---- Step 1: scores. St[c][.] = K[c] . Qt for R keys and NV vectors of query lanes at a time.
template <class Simd, int R, int NV>
inline void score_keys(const float* k, int64_t ldk, const float* qt, int64_t E, float* st) {
  using V = typename Simd::V;
  constexpr int W = Simd::kWidth;
  V acc[R][NV];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < NV; ++j) acc[i][j] = Simd::zero();
  const float* qe = qt;
  for (int64_t e = 0; e < E; ++e, qe += kBr) {
    V qv[NV];
    for (int j = 0; j < NV; ++j) qv[j] = Simd::load(qe + j * W);
    for (int i = 0; i < R; ++i) {
      const V kb = Simd::set1(k[i * ldk + e]);
      for (int j = 0; j < NV; ++j) acc[i][j] = Simd::fmadd(kb, qv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < NV; ++j) Simd::store(st + i * kBr + j * W, acc[i][j]);
}

// One panel of NV query vectors against every key of the tile.
template <class Simd, int NV>
void score_panel(const float* k, int64_t ldk, int64_t cols, const float* qt, int64_t E, float* st) {
  constexpr int R = Simd::kQkRows;
  int64_t c = 0;
  for (; c + R <= cols; c += R) score_keys<Simd, R, NV>(k + c * ldk, ldk, qt, E, st + c * kBr);
  k += c * ldk;
  st += c * kBr;
  switch (cols - c) {  // the key tail, fewer than R keys
    case 1: score_keys<Simd, 1, NV>(k, ldk, qt, E, st); break;
    case 2: if constexpr (R > 2) score_keys<Simd, 2, NV>(k, ldk, qt, E, st); break;
    case 3: if constexpr (R > 3) score_keys<Simd, 3, NV>(k, ldk, qt, E, st); break;
    case 4: if constexpr (R > 4) score_keys<Simd, 4, NV>(k, ldk, qt, E, st); break;
    case 5: if constexpr (R > 5) score_keys<Simd, 5, NV>(k, ldk, qt, E, st); break;
    default: break;
  }
}

// Only the query lanes in use ([0, lanes), whole vectors) are computed: a short block
// (decoding, the last block of a head) costs what its rows need.
template <class Simd>
void compute_scores(const float* k, int64_t ldk, int64_t cols, const float* qt, int64_t E, int64_t lanes, float* st) {
  constexpr int W = Simd::kWidth, NV = Simd::kQkVecs;
  int64_t r = 0;
  for (; r + NV * W <= lanes; r += NV * W) score_panel<Simd, NV>(k, ldk, cols, qt + r, E, st + r);
  switch ((lanes - r) / W) {  // a partial panel
    case 1: score_panel<Simd, 1>(k, ldk, cols, qt + r, E, st + r); break;
    case 2: if constexpr (NV > 2) score_panel<Simd, 2>(k, ldk, cols, qt + r, E, st + r); break;
    case 3: if constexpr (NV > 3) score_panel<Simd, 3>(k, ldk, cols, qt + r, E, st + r); break;
    default: break;
  }
}

// ---- Step 1 for a block of a few rows (decoding): scores as dot products along E, with
// vectors over E, then one horizontal sum per score. Broadcasting keys against query lanes
// would leave all but `rows` of the W lanes idle. KC keys at a time keep KC * RQ FMA chains
// in flight. `qr` holds the rows row-major (stride ldq >= E, zero-padded to whole vectors).
template <class Simd, int RQ, int KC>
inline void score_dot_keys(const float* k, int64_t ldk, const float* qr, int64_t ldq, int64_t E, float* st) {
  using V = typename Simd::V;
  constexpr int W = Simd::kWidth;
  V acc[RQ][KC];
  for (int r = 0; r < RQ; ++r)
    for (int j = 0; j < KC; ++j) acc[r][j] = Simd::zero();
  for (int64_t e = 0; e < E; e += W) {
    V kv[KC];
    for (int j = 0; j < KC; ++j) kv[j] = e + W <= E ? Simd::load(k + j * ldk + e) : Simd::load_n(k + j * ldk + e, E - e);
    for (int r = 0; r < RQ; ++r) {
      const V qv = Simd::load(qr + r * ldq + e);
      for (int j = 0; j < KC; ++j) acc[r][j] = Simd::fmadd(qv, kv[j], acc[r][j]);
    }
  }
  for (int r = 0; r < RQ; ++r)
    for (int j = 0; j < KC; ++j) st[j * kBr + r] = Simd::reduce_add(acc[r][j]);
}

constexpr int64_t kDotRows = 4;  // blocks of at most this many rows take the dot-product path

template <class Simd, int RQ>
void score_dot_rows(const float* k, int64_t ldk, int64_t cols, const float* qr, int64_t ldq, int64_t E, float* st) {
  constexpr int KC = 4;
  int64_t c = 0;
  for (; c + KC <= cols; c += KC) score_dot_keys<Simd, RQ, KC>(k + c * ldk, ldk, qr, ldq, E, st + c * kBr);
  for (; c < cols; ++c) score_dot_keys<Simd, RQ, 1>(k + c * ldk, ldk, qr, ldq, E, st + c * kBr);
}

template <class Simd>
void compute_scores_dot(const float* k, int64_t ldk, int64_t cols, const float* qr, int64_t ldq, int64_t E,
                        int64_t rows, float* st) {
  switch (rows) {
    case 1: return score_dot_rows<Simd, 1>(k, ldk, cols, qr, ldq, E, st);
    case 2: return score_dot_rows<Simd, 2>(k, ldk, cols, qr, ldq, E, st);
    case 3: return score_dot_rows<Simd, 3>(k, ldk, cols, qr, ldq, E, st);
    default: return score_dot_rows<Simd, 4>(k, ldk, cols, qr, ldq, E, st);
  }
}

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

// ---- Step 5: O[r] = alpha[r] * O[r] + sum_c P[r][c] * V[c], R rows x NV vectors of columns at a time.
template <class Simd, int R, int NV, bool kGuard>
inline void pv_block(const float* pt, int64_t cols, const float* v, int64_t ldv, const float* alpha, float* o,
                     int64_t ldo) {
  using V = typename Simd::V;
  constexpr int W = Simd::kWidth;
  V acc[R][NV];
  for (int i = 0; i < R; ++i) {
    const V a = Simd::set1(alpha[i]);
    for (int j = 0; j < NV; ++j) acc[i][j] = Simd::mul(Simd::load(o + i * ldo + j * W), a);
  }
  for (int64_t c = 0; c < cols; ++c) {
    V vv[NV];
    for (int j = 0; j < NV; ++j) vv[j] = Simd::load(v + c * ldv + j * W);
    for (int i = 0; i < R; ++i) {
      const V pb = Simd::set1(pt[c * kBr + i]);
      for (int j = 0; j < NV; ++j)
        acc[i][j] = kGuard ? Simd::fmadd_nonzero(pb, vv[j], acc[i][j]) : Simd::fmadd(pb, vv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < NV; ++j) Simd::store(o + i * ldo + j * W, acc[i][j]);
}

template <class Simd, int R, bool kGuard>
inline void pv_rows(const float* pt, int64_t cols, const float* v, int64_t ldv, int64_t nvec, const float* alpha,
                    float* o, int64_t ldo) {
  constexpr int W = Simd::kWidth, NV = Simd::kPvVecs;
  int64_t j = 0;
  for (; j + NV <= nvec; j += NV) pv_block<Simd, R, NV, kGuard>(pt, cols, v + j * W, ldv, alpha, o + j * W, ldo);
  switch (nvec - j) {
    case 1: pv_block<Simd, R, 1, kGuard>(pt, cols, v + j * W, ldv, alpha, o + j * W, ldo); break;
    case 2: if constexpr (NV > 2) pv_block<Simd, R, 2, kGuard>(pt, cols, v + j * W, ldv, alpha, o + j * W, ldo); break;
    case 3: if constexpr (NV > 3) pv_block<Simd, R, 3, kGuard>(pt, cols, v + j * W, ldv, alpha, o + j * W, ldo); break;
    default: break;
  }
}

template <class Simd, bool kGuard>
void accumulate_pv(const float* st, int64_t rows, int64_t cols, const float* v, int64_t ldv, int64_t nvec,
                   const float* alpha, float* o, int64_t ldo) {
  constexpr int R = Simd::kPvRows;
  int64_t r = 0;
  for (; r + R <= rows; r += R) pv_rows<Simd, R, kGuard>(st + r, cols, v, ldv, nvec, alpha + r, o + r * ldo, ldo);
  const float* pt = st + r;
  float* orow = o + r * ldo;
  switch (rows - r) {  // the row tail, fewer than R rows
    case 1: pv_rows<Simd, 1, kGuard>(pt, cols, v, ldv, nvec, alpha + r, orow, ldo); break;
    case 2: if constexpr (R > 2) pv_rows<Simd, 2, kGuard>(pt, cols, v, ldv, nvec, alpha + r, orow, ldo); break;
    case 3: if constexpr (R > 3) pv_rows<Simd, 3, kGuard>(pt, cols, v, ldv, nvec, alpha + r, orow, ldo); break;
    case 4: if constexpr (R > 4) pv_rows<Simd, 4, kGuard>(pt, cols, v, ldv, nvec, alpha + r, orow, ldo); break;
    case 5: if constexpr (R > 5) pv_rows<Simd, 5, kGuard>(pt, cols, v, ldv, nvec, alpha + r, orow, ldo); break;
    default: break;
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

    // A block of a few rows takes the dot-product path; lanes past its rows are zeroed once
    // so the lane-wise softmax never meets stale values there.
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
