// Q*K^T and P*V for one warp's R x 16 query rows (R m16 row blocks; the 32-rows-per-warp rung uses
// R = 2) with 16-bit operands, same ldmatrix / mma m16n8k16 / padded-pitch scheme as warp_mma16.cuh
// (the 16-row rung, kept as it was). Every K and V fragment loaded by ldmatrix feeds the mmas of all
// R row blocks: 1/R of the shared-memory bytes per mma for P*V and for K.
#pragma once

#include <cstdint>

#include "warp_mma16.cuh"

namespace flash_attn_ext::cuda::v3 {

// PITCH: row pitch of the Q, K and V buffers in elements. Q_IN_REGS: Q's A fragments are
// loaded once (R x HD/4 registers) instead of once per key tile. R: m16 row blocks per warp;
// row block rb is rows 16 rb .. 16 rb + 15 of the warp's tile.
template <bool BF16, int HD, int BN, int PITCH, bool Q_IN_REGS, int R>
struct WarpMma16R {
  static constexpr int kK = HD / 16;  // k-steps of Q*K^T
  uint32_t qf[R][Q_IN_REGS ? kK : 1][4];

  // sQ: the warp's first query row. Lane l addresses row l % 16, column block l / 16.
  __device__ __forceinline__ void load_q_frag(uint32_t (&a)[4], const uint16_t* sQ, int kk, int lane) const {
    ptx::ldmatrix_x4(a, ptx::smem_addr(sQ + (lane % 16) * PITCH + kk * 16 + (lane / 16) * 8));
  }

  __device__ __forceinline__ void load_q(const uint16_t* sQ, int lane) {
    if constexpr (Q_IN_REGS) {
#pragma unroll
      for (int rb = 0; rb < R; ++rb)
#pragma unroll
        for (int kk = 0; kk < kK; ++kk) load_q_frag(qf[rb][kk], sQ + rb * 16 * PITCH, kk, lane);
    }
  }

  // S (R x 16 x BN) = Q * K^T. One ldmatrix.x4 of K feeds two n8 blocks of every row block.
  __device__ __forceinline__ void qk(float (&S)[R][BN / 8][4], const uint16_t* sQ, const uint16_t* sK,
                                     int lane) const {
    const int key = (lane / 16) * 8 + lane % 8, col = ((lane / 8) % 2) * 8;
#pragma unroll
    for (int kk = 0; kk < kK; ++kk) {
      uint32_t a[R][4];
#pragma unroll
      for (int rb = 0; rb < R; ++rb) {
        if constexpr (Q_IN_REGS) {
#pragma unroll
          for (int i = 0; i < 4; ++i) a[rb][i] = qf[rb][kk][i];
        } else {
          load_q_frag(a[rb], sQ + rb * 16 * PITCH, kk, lane);
        }
      }
#pragma unroll
      for (int nb = 0; nb < BN / 8; nb += 2) {
        uint32_t b[4];
        ptx::ldmatrix_x4(b, ptx::smem_addr(sK + (nb * 8 + key) * PITCH + kk * 16 + col));
#pragma unroll
        for (int rb = 0; rb < R; ++rb) {
          mma16<BF16>(S[rb][nb], a[rb], b[0], b[1]);
          mma16<BF16>(S[rb][nb + 1], a[rb], b[2], b[3]);
        }
      }
    }
  }

  // O (R x 16 x HD) += P * V, P taken from the score registers (the accumulator layout of two
  // n8 blocks is the A layout of one k16 step). With CLEAN, keys no row of this warp (of any
  // row block) sees (bit nb*4 + e of `keys` clear) get V = 0, so NaN/Inf stored there cannot
  // reach O through 0 * NaN.
  template <bool CLEAN, typename Bits>
  __device__ __forceinline__ void pv(float (&O)[R][HD / 8][4], const float (&P)[R][BN / 8][4], const uint16_t* sV,
                                     int lane, Bits keys) const {
    const int key = ((lane / 8) % 2) * 8 + lane % 8, col = (lane / 16) * 8;
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      uint32_t a[R][4];
#pragma unroll
      for (int rb = 0; rb < R; ++rb) {
        a[rb][0] = pack2<BF16>(P[rb][2 * kk][0], P[rb][2 * kk][1]);
        a[rb][1] = pack2<BF16>(P[rb][2 * kk][2], P[rb][2 * kk][3]);
        a[rb][2] = pack2<BF16>(P[rb][2 * kk + 1][0], P[rb][2 * kk + 1][1]);
        a[rb][3] = pack2<BF16>(P[rb][2 * kk + 1][2], P[rb][2 * kk + 1][3]);
      }
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
        const uint32_t b0 = b[0] & keep0, b1 = b[1] & keep1, b2 = b[2] & keep0, b3 = b[3] & keep1;
#pragma unroll
        for (int rb = 0; rb < R; ++rb) {
          mma16<BF16>(O[rb][nb], a[rb], b0, b1);
          mma16<BF16>(O[rb][nb + 1], a[rb], b2, b3);
        }
      }
    }
  }
};

}  // namespace flash_attn_ext::cuda::v3
