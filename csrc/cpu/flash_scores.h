// Step 1 of the vector kernel, the scores St[c][r] = q_r . k_c in log2 units, key-major:
// register-blocked micro-kernels broadcasting key elements against vectors of query lanes,
// and a dot-product variant for blocks of a few rows (decoding).
// Include only inside an ISA target region (through flash_forward_impl.h); everything here
// has internal linkage.
#pragma once

#include <cstdint>

#include "flash_tiles.h"

namespace flash_attn_ext::cpu {
namespace {

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

}  // namespace
}  // namespace flash_attn_ext::cpu
