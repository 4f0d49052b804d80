// Warp-level tensor-core products of the backward, 16-bit operands, float accumulators.
//
// The backward multiplies the same tiles in every orientation (S^T = K Q^T, dV += P^T dO,
// dK += dS^T Q, dQ += dS K), so instead of one routine per product there are three operand
// sources, each an ldmatrix pattern over padded row-major shared memory:
//   rows of A      : A (16 x K) stored row-major                   -> ldmatrix
//   A^T stored     : A (16 x K) stored as its transpose (K rows)   -> ldmatrix.trans
//   A in registers : a float accumulator fragment (16 x K), packed to 16 bit
// and two for B (K x N): stored as N rows of K (B^T row-major, ldmatrix) or as K rows of N
// (row-major, ldmatrix.trans). Accumulator fragments follow the PTX layout: element e of
// C[nb] is row g + 8*(e/2), column nb*8 + 2t + e%2, with g = lane/4, t = lane%4.
#pragma once

#include <cstdint>

#include "../../ptx/ldmatrix.cuh"
#include "../v3_mma/warp_mma16.cuh"

namespace flash_attn_ext::cuda::bwd {

using v3::mma16;
using v3::pack2;

// A fragment of k-step kk from 16 row-major rows at sA (pitch PA elements).
template <int PA>
__device__ __forceinline__ void load_a_rows(uint32_t (&a)[4], const uint16_t* sA, int kk, int lane) {
  ptx::ldmatrix_x4(a, ptx::smem_addr(sA + (lane % 16) * PA + kk * 16 + (lane / 16) * 8));
}

// A fragment of k-step kk when shared memory holds A^T: K rows (pitch PT), A's 16 rows are
// columns col0..col0+15. Tiles: 0 = (rows 0-7, k 0-7), 1 = (rows 8-15, k 0-7), 2 = (rows 0-7,
// k 8-15), 3 = (rows 8-15, k 8-15); the transposed load hands thread (g, t) k = 2t, 2t+1 of row g.
template <int PT>
__device__ __forceinline__ void load_a_trans(uint32_t (&a)[4], const uint16_t* sAT, int col0, int kk, int lane) {
  const int tile = lane / 8, r = lane % 8;
  ptx::ldmatrix_x4_trans(a, ptx::smem_addr(sAT + (kk * 16 + (tile / 2) * 8 + r) * PT + col0 + (tile % 2) * 8));
}

// The A fragments (16 x K) of a float accumulator fragment (16 x K): two n8 blocks of the
// accumulator layout are one k16 step of the A layout.
template <bool BF16, int K>
__device__ __forceinline__ void regs_to_a(uint32_t (&a)[K / 16][4], const float (&c)[K / 8][4]) {
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    a[kk][0] = pack2<BF16>(c[2 * kk][0], c[2 * kk][1]);
    a[kk][1] = pack2<BF16>(c[2 * kk][2], c[2 * kk][3]);
    a[kk][2] = pack2<BF16>(c[2 * kk + 1][0], c[2 * kk + 1][1]);
    a[kk][3] = pack2<BF16>(c[2 * kk + 1][2], c[2 * kk + 1][3]);
  }
}

// C (16 x N) += A (16 x K, rows at sA) * B, where sB holds B^T: N rows of K (pitch PB).
template <bool BF16, int N, int K, int PA, int PB>
__device__ __forceinline__ void mma_rows_bt(float (&C)[N / 8][4], const uint16_t* sA, const uint16_t* sB, int lane) {
  const int n = (lane / 16) * 8 + lane % 8, k = ((lane / 8) % 2) * 8;
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    uint32_t a[4];
    load_a_rows<PA>(a, sA, kk, lane);
#pragma unroll
    for (int nb = 0; nb < N / 8; nb += 2) {
      uint32_t b[4];
      ptx::ldmatrix_x4(b, ptx::smem_addr(sB + (nb * 8 + n) * PB + kk * 16 + k));
      mma16<BF16>(C[nb], a, b[0], b[1]);
      mma16<BF16>(C[nb + 1], a, b[2], b[3]);
    }
  }
}

// One k-step: C (16 x N) += a (16 x 16) * B rows kk*16..kk*16+15, sB row-major K x N (pitch PB),
// columns n0..n0+N-1.
template <bool BF16, int N, int PB>
__device__ __forceinline__ void mma_step_b_rows(float (&C)[N / 8][4], const uint32_t (&a)[4], const uint16_t* sB,
                                                int kk, int n0, int lane) {
  const int k = ((lane / 8) % 2) * 8 + lane % 8, n = (lane / 16) * 8;
#pragma unroll
  for (int nb = 0; nb < N / 8; nb += 2) {
    uint32_t b[4];
    ptx::ldmatrix_x4_trans(b, ptx::smem_addr(sB + (kk * 16 + k) * PB + n0 + nb * 8 + n));
    mma16<BF16>(C[nb], a, b[0], b[1]);
    mma16<BF16>(C[nb + 1], a, b[2], b[3]);
  }
}

// C (16 x N) += A (16 x K, packed fragments in registers) * B, sB row-major K x N (pitch PB).
template <bool BF16, int N, int K, int PB>
__device__ __forceinline__ void mma_regs_b(float (&C)[N / 8][4], const uint32_t (&a)[K / 16][4], const uint16_t* sB,
                                           int lane) {
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) mma_step_b_rows<BF16, N, PB>(C, a[kk], sB, kk, 0, lane);
}

template <int NB>
__device__ __forceinline__ void zero(float (&c)[NB][4]) {
#pragma unroll
  for (int i = 0; i < NB; ++i) c[i][0] = c[i][1] = c[i][2] = c[i][3] = 0.f;
}

}  // namespace flash_attn_ext::cuda::bwd
