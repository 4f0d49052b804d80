// Warp-level TF32 / 3xTF32 tensor-core products of the float32 backward (mma m16n8k8), the
// float32 counterparts of warp_ops.cuh's three A sources and two B layouts. No ldmatrix (it moves
// 16-bit elements); fragments come from plain shared-memory loads instead, with the forward's k
// permutation (v3_mma/warp_mma32.cuh): within each k8 step, A column t <-> element 2t and column
// t + 4 <-> element 2t + 1, B rows likewise. A dot product does not care about the order of its
// terms; the permutation lets an accumulator fragment be an A fragment without shuffles, makes
// row-major A (and B^T) loads one float2 each, and with pitches of 4 mod 32 every load is
// conflict-free (tile_sizes.h).
//
// X3 (3xTF32): each operand is split into big + small and each k-step's three products go into a
// zeroed accumulator that a rounded FADD folds into the running sum (NOTES_v3 "Step 2": the tensor
// cores truncate when they add into an accumulator, a bias that grows with the terms summed).
#pragma once

#include <cstdint>

#include "../v3_mma/warp_mma32.cuh"

namespace flash_attn_ext::cuda::bwd {

template <bool X3>
using Tf32 = v3::Tf32Operand<X3>;

template <bool X3>
__device__ __forceinline__ void mma32_step(float (&acc)[4], const Tf32<X3> (&a)[4], const Tf32<X3>& b0,
                                           const Tf32<X3>& b1) {
  if constexpr (X3) {
    float part[4] = {0.f, 0.f, 0.f, 0.f};
    v3::mma_tf32<X3>(part, a, b0, b1);
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[i] += part[i];
  } else {
    v3::mma_tf32<X3>(acc, a, b0, b1);
  }
}

// C (16 x N) += A (16 x K, row-major at sA, pitch PA) * B, where sB holds B^T: N rows of K (pitch PB).
template <bool X3, int N, int K, int PA, int PB>
__device__ __forceinline__ void mma32_rows_bt(float (&C)[N / 8][4], const float* sA, const float* sB, int lane) {
  const int g = lane / 4, t = lane % 4;
  // Partly unrolled: fully unrolled, ptxas hoists loads of later k-steps and spills at HD = 128.
#pragma unroll 2
  for (int k8 = 0; k8 < K / 8; ++k8) {
    const float2 r0 = *reinterpret_cast<const float2*>(sA + g * PA + k8 * 8 + 2 * t);
    const float2 r1 = *reinterpret_cast<const float2*>(sA + (g + 8) * PA + k8 * 8 + 2 * t);
    const Tf32<X3> a[4] = {Tf32<X3>(r0.x), Tf32<X3>(r1.x), Tf32<X3>(r0.y), Tf32<X3>(r1.y)};
#pragma unroll
    for (int nb = 0; nb < N / 8; ++nb) {
      const float2 bv = *reinterpret_cast<const float2*>(sB + (nb * 8 + g) * PB + k8 * 8 + 2 * t);
      mma32_step<X3>(C[nb], a, Tf32<X3>(bv.x), Tf32<X3>(bv.y));
    }
  }
}

// C (16 x N) += A (16 x K, an accumulator fragment in registers) * B, sB row-major K x N (pitch
// PB), columns n0..n0+N-1.
template <bool X3, int N, int K, int PB>
__device__ __forceinline__ void mma32_regs_b(float (&C)[N / 8][4], const float (&A)[K / 8][4], const float* sB,
                                             int n0, int lane) {
  const int g = lane / 4, t = lane % 4;
#pragma unroll
  for (int kb = 0; kb < K / 8; ++kb) {
    const Tf32<X3> a[4] = {Tf32<X3>(A[kb][0]), Tf32<X3>(A[kb][2]), Tf32<X3>(A[kb][1]), Tf32<X3>(A[kb][3])};
    const float* b = sB + (kb * 8 + 2 * t) * PB + n0 + g;
#pragma unroll
    for (int nb = 0; nb < N / 8; ++nb) mma32_step<X3>(C[nb], a, Tf32<X3>(b[nb * 8]), Tf32<X3>(b[PB + nb * 8]));
  }
}

// C (16 x N) += A * B over K, where sAT holds A^T (K rows, pitch PT; A's 16 rows are columns
// col0..col0+15) and sB is row-major K x N (pitch PB), columns n0..n0+N-1: the dQ step.
template <bool X3, int N, int K, int PT, int PB>
__device__ __forceinline__ void mma32_trans_b(float (&C)[N / 8][4], const float* sAT, int col0, const float* sB,
                                              int n0, int lane) {
  const int g = lane / 4, t = lane % 4;
#pragma unroll
  for (int kb = 0; kb < K / 8; ++kb) {
    const float* at = sAT + (kb * 8 + 2 * t) * PT + col0 + g;
    const Tf32<X3> a[4] = {Tf32<X3>(at[0]), Tf32<X3>(at[8]), Tf32<X3>(at[PT]), Tf32<X3>(at[PT + 8])};
    const float* b = sB + (kb * 8 + 2 * t) * PB + n0 + g;
#pragma unroll
    for (int nb = 0; nb < N / 8; ++nb) mma32_step<X3>(C[nb], a, Tf32<X3>(b[nb * 8]), Tf32<X3>(b[PB + nb * 8]));
  }
}

// float32 gradient rows: columns past `cols` (the padded head dim) are not written.
__device__ __forceinline__ void store_out_pair_f32(float* dst, int64_t col, int64_t cols, float x, float y) {
  if (col + 1 < cols && (cols % 2) == 0) {
    *reinterpret_cast<float2*>(dst) = make_float2(x, y);
  } else if (col < cols) {
    dst[0] = x;
    if (col + 1 < cols) dst[1] = y;
  }
}

}  // namespace flash_attn_ext::cuda::bwd
