// Q*K^T and P*V for one warp's 16 query rows with float32 operands on TF32 tensor cores
// (mma m16n8k8). The k index of each k8 step is permuted (A column t <-> element 2t,
// column t + 4 <-> element 2t + 1, B rows likewise): a dot product does not care about
// the order of its terms, and the permutation lets Q and K fragments come as one 8-byte
// load each, and P come straight from the score registers without shuffles.
//
// X3 (3xTF32): each operand x is split into big = tf32(x) and small = tf32(x - big) and the
// product is small*big + big*small + big*big (small*small is below float32 rounding),
// which recovers about float32 accuracy at three times the tensor-core work.
#pragma once

#include <cstdint>

#include "../../ptx/mma.cuh"

namespace flash_attn_ext::cuda::v3 {

template <bool X3>
struct Tf32Operand {
  uint32_t big = 0, small = 0;
  Tf32Operand() = default;
  __device__ __forceinline__ explicit Tf32Operand(float x) {
    big = ptx::to_tf32(x);
    if constexpr (X3) small = ptx::to_tf32(x - __uint_as_float(big));
  }
};

template <bool X3>
__device__ __forceinline__ void mma_tf32(float (&c)[4], const Tf32Operand<X3> (&a)[4], const Tf32Operand<X3>& b0,
                                         const Tf32Operand<X3>& b1) {
  const uint32_t ab[4] = {a[0].big, a[1].big, a[2].big, a[3].big};
  if constexpr (X3) {
    const uint32_t as[4] = {a[0].small, a[1].small, a[2].small, a[3].small};
    ptx::mma_1688_tf32(c, as, b0.big, b1.big);
    ptx::mma_1688_tf32(c, ab, b0.small, b1.small);
  }
  ptx::mma_1688_tf32(c, ab, b0.big, b1.big);
}

// QK_PITCH (Q and K rows, in floats) is 8 mod 32: the 8-byte loads of a half-warp (rows g,
// elements 2t, 2t + 1) cover 32 distinct banks. V_PITCH is 4 mod 32: the 4-byte loads of
// rows 2t and 2t + 1, column g, hit 32 distinct banks.
template <bool X3, int HD, int BN, int QK_PITCH, int V_PITCH>
struct WarpMma32 {
  __device__ __forceinline__ void load_q(const float*, int) {}

  // The tensor cores truncate when they add into an accumulator, a bias that grows with the
  // number of products summed into one register. With X3, each k-step's three products go
  // into a fresh accumulator that a rounded FADD folds into the running sum (measured: max
  // error 3.8e-5 -> 5e-6 of max|out| when only every 4th step did this).
  __device__ __forceinline__ void qk(float (&S)[BN / 8][4], const float* sQ, const float* sK, int lane) const {
    const int g = lane / 4, t = lane % 4;
#pragma unroll
    for (int k8 = 0; k8 < HD / 8; ++k8) {
      const float2 q0 = *reinterpret_cast<const float2*>(sQ + g * QK_PITCH + k8 * 8 + 2 * t);
      const float2 q1 = *reinterpret_cast<const float2*>(sQ + (g + 8) * QK_PITCH + k8 * 8 + 2 * t);
      const Tf32Operand<X3> a[4] = {Tf32Operand<X3>(q0.x), Tf32Operand<X3>(q1.x), Tf32Operand<X3>(q0.y),
                                    Tf32Operand<X3>(q1.y)};
#pragma unroll
      for (int nb = 0; nb < BN / 8; ++nb) {
        const float2 kv = *reinterpret_cast<const float2*>(sK + (nb * 8 + g) * QK_PITCH + k8 * 8 + 2 * t);
        mma_step(S[nb], a, Tf32Operand<X3>(kv.x), Tf32Operand<X3>(kv.y));
      }
    }
  }

  // With CLEAN, keys no row of this warp sees (bit kb*4 + e of `keys` clear) read V as 0.
  // With X3, the products of kFold k-steps (32 keys) go into one zeroed accumulator before the
  // rounded FADD into O: a quarter of the FADDs and of the O roundings, which after the rescale
  // fix are the largest error left (emulated max 1.1e-6 -> 0.7e-6 of max|out|); the P fragments
  // of the group stay split in registers.
  template <bool CLEAN, typename Bits>
  __device__ __forceinline__ void pv(float (&O)[HD / 8][4], const float (&P)[BN / 8][4], const float* sV, int lane,
                                     Bits keys) const {
    const int g = lane / 4, t = lane % 4;
    constexpr int kFold = X3 ? 4 : 1;
    static_assert(BN % (8 * kFold) == 0, "key tile: whole fold groups");
#pragma unroll
    for (int k0 = 0; k0 < BN / 8; k0 += kFold) {
      Tf32Operand<X3> a[kFold][4];
      bool keep[kFold][2];
#pragma unroll
      for (int i = 0; i < kFold; ++i) {
        const int kb = k0 + i;
        a[i][0] = Tf32Operand<X3>(P[kb][0]);
        a[i][1] = Tf32Operand<X3>(P[kb][2]);
        a[i][2] = Tf32Operand<X3>(P[kb][1]);
        a[i][3] = Tf32Operand<X3>(P[kb][3]);
        keep[i][0] = !CLEAN || ((keys >> (4 * kb)) & 1);
        keep[i][1] = !CLEAN || ((keys >> (4 * kb + 1)) & 1);
      }
#pragma unroll
      for (int nb = 0; nb < HD / 8; ++nb) {
        float part[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int i = 0; i < kFold; ++i) {
          const float* v0 = sV + ((k0 + i) * 8 + 2 * t) * V_PITCH + g + nb * 8;
          const float x0 = keep[i][0] ? v0[0] : 0.f, x1 = keep[i][1] ? v0[V_PITCH] : 0.f;
          mma_tf32<X3>(X3 ? part : O[nb], a[i], Tf32Operand<X3>(x0), Tf32Operand<X3>(x1));
        }
        if constexpr (X3) {
#pragma unroll
          for (int e = 0; e < 4; ++e) O[nb][e] += part[e];
        }
      }
    }
  }

 private:
  __device__ __forceinline__ static void mma_step(float (&acc)[4], const Tf32Operand<X3> (&a)[4],
                                                  const Tf32Operand<X3>& b0, const Tf32Operand<X3>& b1) {
    if constexpr (X3) {
      float part[4] = {0.f, 0.f, 0.f, 0.f};
      mma_tf32<X3>(part, a, b0, b1);
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[i] += part[i];
    } else {
      mma_tf32<X3>(acc, a, b0, b1);
    }
  }
};

}  // namespace flash_attn_ext::cuda::v3
