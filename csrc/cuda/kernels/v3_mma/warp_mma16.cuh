// Q*K^T and P*V for one warp's 16 query rows with 16-bit operands: ldmatrix from padded
// shared memory (a row pitch of HD + 8 elements puts the 8 rows of each 8x8 tile in 8
// different 16-byte bank groups, so every ldmatrix is conflict-free) and mma m16n8k16.
#pragma once

#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../../ptx/ldmatrix.cuh"
#include "../../ptx/mma.cuh"

namespace flash_attn_ext::cuda::v3 {

template <bool BF16>
__device__ __forceinline__ void mma16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (BF16) ptx::mma_16816_bf16(c, a, b0, b1);
  else ptx::mma_16816_f16(c, a, b0, b1);
}

template <bool BF16>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (BF16) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  } else {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
}

// PITCH: row pitch of the Q, K and V buffers in elements. Q_IN_REGS: Q's A fragments are
// loaded once (HD/4 registers) instead of once per key tile.
template <bool BF16, int HD, int BN, int PITCH, bool Q_IN_REGS>
struct WarpMma16 {
  static constexpr int kK = HD / 16;  // k-steps of Q*K^T
  uint32_t qf[Q_IN_REGS ? kK : 1][4];

  // sQ: the warp's first query row. Lane l addresses row l % 16, column block l / 16.
  __device__ __forceinline__ void load_q_frag(uint32_t (&a)[4], const uint16_t* sQ, int kk, int lane) const {
    ptx::ldmatrix_x4(a, ptx::smem_addr(sQ + (lane % 16) * PITCH + kk * 16 + (lane / 16) * 8));
  }

  __device__ __forceinline__ void load_q(const uint16_t* sQ, int lane) {
    if constexpr (Q_IN_REGS) {
#pragma unroll
      for (int kk = 0; kk < kK; ++kk) load_q_frag(qf[kk], sQ, kk, lane);
    }
  }

  // S (16 x BN) = Q * K^T. One ldmatrix.x4 of K feeds two n8 blocks.
  __device__ __forceinline__ void qk(float (&S)[BN / 8][4], const uint16_t* sQ, const uint16_t* sK, int lane) const {
    const int key = (lane / 16) * 8 + lane % 8, col = ((lane / 8) % 2) * 8;
#pragma unroll
    for (int kk = 0; kk < kK; ++kk) {
      uint32_t a[4];
      if constexpr (Q_IN_REGS) {
#pragma unroll
        for (int i = 0; i < 4; ++i) a[i] = qf[kk][i];
      } else {
        load_q_frag(a, sQ, kk, lane);
      }
#pragma unroll
      for (int nb = 0; nb < BN / 8; nb += 2) {
        uint32_t b[4];
        ptx::ldmatrix_x4(b, ptx::smem_addr(sK + (nb * 8 + key) * PITCH + kk * 16 + col));
        mma16<BF16>(S[nb], a, b[0], b[1]);
        mma16<BF16>(S[nb + 1], a, b[2], b[3]);
      }
    }
  }

  // O (16 x HD) += P * V, P taken from the score registers (the accumulator layout of two
  // n8 blocks is the A layout of one k16 step). With CLEAN, keys no row of this warp
  // sees (bit nb*4 + e of `keys` clear) get V = 0, so NaN/Inf stored there cannot reach O
  // through 0 * NaN.
  template <bool CLEAN, typename Bits>
  __device__ __forceinline__ void pv(float (&O)[HD / 8][4], const float (&P)[BN / 8][4], const uint16_t* sV,
                                     int lane, Bits keys) const {
    const int key = ((lane / 8) % 2) * 8 + lane % 8, col = (lane / 16) * 8;
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      const uint32_t a[4] = {pack2<BF16>(P[2 * kk][0], P[2 * kk][1]), pack2<BF16>(P[2 * kk][2], P[2 * kk][3]),
                             pack2<BF16>(P[2 * kk + 1][0], P[2 * kk + 1][1]),
                             pack2<BF16>(P[2 * kk + 1][2], P[2 * kk + 1][3])};
      uint32_t keep0 = 0xffffffffu, keep1 = 0xffffffffu;
      if constexpr (CLEAN) {
        const uint32_t k8 = static_cast<uint32_t>(keys >> (8 * kk));
        keep0 = ((k8 & 0x01) ? 0x0000ffffu : 0u) | ((k8 & 0x02) ? 0xffff0000u : 0u);
        keep1 = ((k8 & 0x10) ? 0x0000ffffu : 0u) | ((k8 & 0x20) ? 0xffff0000u : 0u);
      }
#pragma unroll
      for (int nb = 0; nb < HD / 8; nb += 2) {
        uint32_t b[4];
        ptx::ldmatrix_x4_trans(b, ptx::smem_addr(sV + (kk * 16 + key) * PITCH + nb * 8 + col));
        mma16<BF16>(O[nb], a, b[0] & keep0, b[1] & keep1);
        mma16<BF16>(O[nb + 1], a, b[2] & keep0, b[3] & keep1);
      }
    }
  }
};

}  // namespace flash_attn_ext::cuda::v3
