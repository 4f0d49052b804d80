// Step 5 of the vector kernel: O = alpha * O + P.V, register-blocked. The guarded variant
// (tiles with hidden keys) skips zero probabilities lane by lane, so 0 * NaN from a hidden
// V row never enters O.
// Include only inside an ISA target region (through flash_forward_impl.h); everything here
// has internal linkage.
#pragma once

#include <cstdint>

#include "flash_tiles.h"

namespace flash_attn_ext::cpu {
namespace {

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

}  // namespace
}  // namespace flash_attn_ext::cpu
