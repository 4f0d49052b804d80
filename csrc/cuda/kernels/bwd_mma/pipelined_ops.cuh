// The warp products of warp_ops.cuh with their ldmatrix fragments issued DEPTH steps ahead of the
// mma that consumes them (a step: one x4 B fragment, two m16n8k16; plus the A fragment on the
// first step of each k16). Used by the v5 dK/dV kernel.
//
// Why: ncu on v4 showed the warps waiting on ldmatrix results with two warps per scheduler; ptxas,
// short of registers, placed most loads a few instructions before their mma. Written as a
// pipeline, each load has DEPTH steps (2 * DEPTH mmas) of other work to hide behind, at the cost of
// DEPTH extra fragments (4 * DEPTH registers) live during the chain. Fully unrolled with constant
// indices, the fragment arrays are plain registers, each live from its load to its mma only.
#pragma once

#include <cstdint>

#include "../../ptx/ldmatrix.cuh"
#include "warp_ops.cuh"

namespace flash_attn_ext::cuda::bwd {

template <int STEPS, int DEPTH, typename Load, typename Use>
__device__ __forceinline__ void software_pipeline(Load&& load, Use&& use) {
#pragma unroll
  for (int s = 0; s < DEPTH && s < STEPS; ++s) load(s);
#pragma unroll
  for (int s = 0; s < STEPS; ++s) {
    if (s + DEPTH < STEPS) load(s + DEPTH);
    use(s);
  }
}

// C (16 x N) += A (16 x K, rows at sA, pitch PA) * B, where sB holds B^T: N rows of K (pitch PB).
template <bool BF16, int N, int K, int PA, int PB, int DEPTH>
__device__ __forceinline__ void mma_rows_bt_pipe(float (&C)[N / 8][4], const uint16_t* sA, const uint16_t* sB,
                                                 int lane) {
  constexpr int J = N / 16, STEPS = K / 16 * J;
  const int n = (lane / 16) * 8 + lane % 8, k = ((lane / 8) % 2) * 8;
  uint32_t fa[K / 16][4], fb[STEPS][4];
  software_pipeline<STEPS, DEPTH>(
      [&](int s) {
        const int kk = s / J, j = s % J;
        if (j == 0) load_a_rows<PA>(fa[kk], sA, kk, lane);
        ptx::ldmatrix_x4(fb[s], ptx::smem_addr(sB + (j * 16 + n) * PB + kk * 16 + k));
      },
      [&](int s) {
        const int kk = s / J, j = s % J;
        mma16<BF16>(C[2 * j], fa[kk], fb[s][0], fb[s][1]);
        mma16<BF16>(C[2 * j + 1], fa[kk], fb[s][2], fb[s][3]);
      });
}

// C (16 x N) += A (16 x K, packed fragments in registers) * B, sB row-major K x N (pitch PB).
template <bool BF16, int N, int K, int PB, int DEPTH>
__device__ __forceinline__ void mma_regs_b_pipe(float (&C)[N / 8][4], const uint32_t (&a)[K / 16][4],
                                                const uint16_t* sB, int lane) {
  constexpr int J = N / 16, STEPS = K / 16 * J;
  const int k = ((lane / 8) % 2) * 8 + lane % 8, n = (lane / 16) * 8;
  uint32_t fb[STEPS][4];
  software_pipeline<STEPS, DEPTH>(
      [&](int s) {
        const int kk = s / J, j = s % J;
        ptx::ldmatrix_x4_trans(fb[s], ptx::smem_addr(sB + (kk * 16 + k) * PB + j * 16 + n));
      },
      [&](int s) {
        const int kk = s / J, j = s % J;
        mma16<BF16>(C[2 * j], a[kk], fb[s][0], fb[s][1]);
        mma16<BF16>(C[2 * j + 1], a[kk], fb[s][2], fb[s][3]);
      });
}

// C (16 x N) += A * B over K, where sAT holds A^T (K rows, pitch PT; A's rows are columns
// col0..col0+15) and sB is row-major K x N (pitch PB), columns n0..n0+N-1: the dQ step.
template <bool BF16, int N, int K, int PT, int PB, int DEPTH>
__device__ __forceinline__ void mma_trans_b_pipe(float (&C)[N / 8][4], const uint16_t* sAT, int col0,
                                                 const uint16_t* sB, int n0, int lane) {
  constexpr int J = N / 16, STEPS = K / 16 * J;
  const int k = ((lane / 8) % 2) * 8 + lane % 8, n = (lane / 16) * 8;
  uint32_t fa[K / 16][4], fb[STEPS][4];
  software_pipeline<STEPS, DEPTH>(
      [&](int s) {
        const int kk = s / J, j = s % J;
        if (j == 0) load_a_trans<PT>(fa[kk], sAT, col0, kk, lane);
        ptx::ldmatrix_x4_trans(fb[s], ptx::smem_addr(sB + (kk * 16 + k) * PB + n0 + j * 16 + n));
      },
      [&](int s) {
        const int kk = s / J, j = s % J;
        mma16<BF16>(C[2 * j], fa[kk], fb[s][0], fb[s][1]);
        mma16<BF16>(C[2 * j + 1], fa[kk], fb[s][2], fb[s][3]);
      });
}

}  // namespace flash_attn_ext::cuda::bwd
