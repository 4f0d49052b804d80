// The backward's product steps, C += A.B, register-blocked like the forward's P.V:
//   dV[c] += sum_r P[c][r] dO[r],  dK[c] += sum_r dS[c][r] Q[r],  dQ[r] += sum_c dS[c][r] K[c].
// A is read through two strides, so the key-major tile (keys x query lanes, row stride kBr)
// serves as A for dV and dK and as its transpose for dQ without being transposed.
// The guarded variant skips zero entries of A lane by lane: a hidden key (dS exactly 0) must
// not bring 0 * NaN from its K row into dQ.
// Include only inside an ISA target region; everything here has internal linkage.
#pragma once

#include <cstdint>

namespace flash_attn_ext::cpu {
namespace {

// C[i][0, NV*W) += sum_k a[i*sa_i + k*sa_k] * B[k][0, NV*W) for R rows i.
template <class Simd, int R, int NV, bool kGuard>
inline void acc_block(const float* a, int64_t sa_i, int64_t sa_k, int64_t kdim, const float* b, int64_t ldb,
                      float* c, int64_t ldc) {
  using V = typename Simd::V;
  constexpr int W = Simd::kWidth;
  V acc[R][NV];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < NV; ++j) acc[i][j] = Simd::load(c + i * ldc + j * W);
  for (int64_t k = 0; k < kdim; ++k) {
    V bv[NV];
    for (int j = 0; j < NV; ++j) bv[j] = Simd::load(b + k * ldb + j * W);
    const float* ak = a + k * sa_k;
    for (int i = 0; i < R; ++i) {
      const V ab = Simd::set1(ak[i * sa_i]);
      for (int j = 0; j < NV; ++j)
        acc[i][j] = kGuard ? Simd::fmadd_nonzero(ab, bv[j], acc[i][j]) : Simd::fmadd(ab, bv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < NV; ++j) Simd::store(c + i * ldc + j * W, acc[i][j]);
}

// R rows of C, all nvec vectors of columns.
template <class Simd, int R, bool kGuard>
inline void acc_rows(const float* a, int64_t sa_i, int64_t sa_k, int64_t kdim, const float* b, int64_t ldb,
                     int64_t nvec, float* c, int64_t ldc) {
  constexpr int W = Simd::kWidth, NV = Simd::kPvVecs;
  int64_t j = 0;
  for (; j + NV <= nvec; j += NV) acc_block<Simd, R, NV, kGuard>(a, sa_i, sa_k, kdim, b + j * W, ldb, c + j * W, ldc);
  switch (nvec - j) {  // the column tail, fewer than NV vectors
    case 1: acc_block<Simd, R, 1, kGuard>(a, sa_i, sa_k, kdim, b + j * W, ldb, c + j * W, ldc); break;
    case 2: if constexpr (NV > 2) acc_block<Simd, R, 2, kGuard>(a, sa_i, sa_k, kdim, b + j * W, ldb, c + j * W, ldc); break;
    case 3: if constexpr (NV > 3) acc_block<Simd, R, 3, kGuard>(a, sa_i, sa_k, kdim, b + j * W, ldb, c + j * W, ldc); break;
    default: break;
  }
}

// C (m rows, row stride ldc) += A (m x kdim, strides sa_i, sa_k) . B (kdim rows of nvec vectors,
// row stride ldb). Columns of B past the data must be zero or finite: they land in C's padding.
template <class Simd, bool kGuard>
void accumulate_product(const float* a, int64_t sa_i, int64_t sa_k, int64_t m, int64_t kdim, const float* b,
                        int64_t ldb, int64_t nvec, float* c, int64_t ldc) {
  constexpr int R = Simd::kPvRows;
  int64_t i = 0;
  for (; i + R <= m; i += R) acc_rows<Simd, R, kGuard>(a + i * sa_i, sa_i, sa_k, kdim, b, ldb, nvec, c + i * ldc, ldc);
  a += i * sa_i;
  c += i * ldc;
  switch (m - i) {  // the row tail, fewer than R rows
    case 1: acc_rows<Simd, 1, kGuard>(a, sa_i, sa_k, kdim, b, ldb, nvec, c, ldc); break;
    case 2: if constexpr (R > 2) acc_rows<Simd, 2, kGuard>(a, sa_i, sa_k, kdim, b, ldb, nvec, c, ldc); break;
    case 3: if constexpr (R > 3) acc_rows<Simd, 3, kGuard>(a, sa_i, sa_k, kdim, b, ldb, nvec, c, ldc); break;
    case 4: if constexpr (R > 4) acc_rows<Simd, 4, kGuard>(a, sa_i, sa_k, kdim, b, ldb, nvec, c, ldc); break;
    case 5: if constexpr (R > 5) acc_rows<Simd, 5, kGuard>(a, sa_i, sa_k, kdim, b, ldb, nvec, c, ldc); break;
    default: break;
  }
}

}  // namespace
}  // namespace flash_attn_ext::cpu
