// dQ without atomics for float32 inputs in deterministic mode: dq_kernel.cuh with float32 tiles and
// TF32 / 3xTF32 products (warp_ops32.cuh). One CTA per (batch, head, block of 64 query rows); warp w
// owns rows 16w..16w+15 and, per 32-key step, recomputes S = Q_w K^T, P, dP = dO_w V^T,
// dS = P * (dP - D), then dQ_w += dS K with dS straight from registers (the k permutation makes the
// accumulator fragment an A fragment). Each dQ element is summed by one thread in a fixed key order:
// bitwise reproducible. Tiles in tile_sizes.h (DqTileSizesF32).
#pragma once

#include <cmath>
#include <cstdint>

#include "../../ptx/cp_async.cuh"
#include "../v3_mma/tile_copy.cuh"
#include "args.h"
#include "probs.cuh"
#include "tile_sizes.h"
#include "warp_ops.cuh"
#include "warp_ops32.cuh"

namespace flash_attn_ext::cuda::bwd {

template <int HD>
struct DqSmemF32 {
  using T = DqTileSizesF32<HD>;
  static constexpr int kQ = T::kBlockM * T::kPitch;   // Q or dO
  static constexpr int kKV = T::kBlockN * T::kPitch;  // one stage of K or V
  static constexpr size_t kBytes = sizeof(float) * (2 * kQ + 4 * kKV);
};

template <bool X3, int HD, bool CAUSAL>
__global__ void __launch_bounds__(DqTileSizesF32<HD>::kThreads, 1)
    bwd_dq_f32_kernel(const __grid_constant__ BwdArgs a) {
  using T = DqTileSizesF32<HD>;
  using Sm = DqSmemF32<HD>;
  constexpr int BM = T::kBlockM, BN = T::kBlockN, NT = T::kThreads, P = T::kPitch;
  const BwdParams& bp = a.p;
  const FwdParams& p = bp.fwd;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* sQ = reinterpret_cast<float*>(smem_raw);
  float* sdO = sQ + Sm::kQ;
  float* sK = sdO + Sm::kQ;      // 2 stages
  float* sV = sK + 2 * Sm::kKV;  // 2 stages

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int64_t bh = blockIdx.x / a.n_qblocks;
  int64_t mb = blockIdx.x % a.n_qblocks;
  if (CAUSAL) mb = a.n_qblocks - 1 - mb;  // longest rows first: better tail balance
  const int64_t b = bh / p.H, h = bh % p.H, hk = h / p.group;
  const int64_t m0 = mb * BM;
  const int rows_valid = static_cast<int>(p.L - m0 < BM ? p.L - m0 : BM);
  const int64_t off = p.causal_offset;
  const int E = static_cast<int>(p.E), Ev = static_cast<int>(p.Ev);

  int64_t key_end = p.S;
  if (CAUSAL) {
    const int64_t e = m0 + rows_valid + off;
    key_end = e < 0 ? 0 : (e < p.S ? e : p.S);
  }
  const int n_tiles = static_cast<int>((key_end + BN - 1) / BN);

  const float* qg = static_cast<const float*>(p.q) + b * p.q_sb + h * p.q_sh + m0 * p.q_sl;
  const float* dog = static_cast<const float*>(bp.dout) + b * bp.do_sb + h * bp.do_sh + m0 * bp.do_sl;
  const float* kg = static_cast<const float*>(p.k) + b * p.k_sb + hk * p.k_sh;
  const float* vg = static_cast<const float*>(p.v) + b * p.v_sb + hk * p.v_sh;
  auto load_kv = [&](int j) {
    const int64_t n0 = int64_t(j) * BN;
    const int rows = static_cast<int>(key_end - n0 < BN ? key_end - n0 : BN);
    v3::copy_tile<float, BN, HD, P, NT>(sK + (j & 1) * Sm::kKV, kg + n0 * p.k_sl, p.k_sl, rows, E, a.k_vec, tid);
    v3::copy_tile<float, BN, HD, P, NT>(sV + (j & 1) * Sm::kKV, vg + n0 * p.v_sl, p.v_sl, rows, Ev, a.v_vec, tid);
  };
  v3::copy_tile<float, BM, HD, P, NT>(sQ, qg, p.q_sl, rows_valid, E, a.q_vec, tid);
  v3::copy_tile<float, BM, HD, P, NT>(sdO, dog, bp.do_sl, rows_valid, Ev, a.do_vec, tid);
  if (n_tiles > 0) load_kv(0);
  ptx::cp_async_commit();

  const int64_t r0 = m0 + warp * 16;
  float lse2[2], dlt[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t row = r0 + g + 8 * r;
    lse2[r] = INFINITY;
    dlt[r] = 0.f;
    if (row < p.L) {
      const float l = p.lse[bh * p.L + row];
      lse2[r] = l == -INFINITY ? INFINITY : l * 1.4426950408889634f;
      dlt[r] = static_cast<const float*>(bp.delta)[bh * p.L + row];
    }
  }
  const ProbRecompute<CAUSAL> prob{p, b * p.m_sb + h * p.m_sh};
  const float* sQw = sQ + warp * 16 * P;
  const float* sdOw = sdO + warp * 16 * P;

  float dQ[HD / 8][4];
  zero(dQ);
  for (int j = 0; j < n_tiles; ++j) {
    ptx::cp_async_wait<0>();
    __syncthreads();  // tile j landed; every warp is done with tile j - 1's buffers
    if (j + 1 < n_tiles) load_kv(j + 1);
    ptx::cp_async_commit();

    const int64_t n0 = int64_t(j) * BN;
    if (r0 >= p.L || (CAUSAL && n0 > r0 + 15 + off)) continue;
    const bool check = n0 + BN > p.S || r0 + 16 > p.L || (CAUSAL && n0 + BN - 1 > r0 + off) ||
                       p.mask_kind != MaskKind::kNone;
    const float* cK = sK + (j & 1) * Sm::kKV;
    const float* cV = sV + (j & 1) * Sm::kKV;

    float S[BN / 8][4];
    zero(S);
    mma32_rows_bt<X3, BN, HD, P, P>(S, sQw, cK, lane);
    bool any = false;
#pragma unroll
    for (int nb = 0; nb < BN / 8; ++nb)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        S[nb][e] = prob(S[nb][e], r0 + g + 8 * (e >> 1), n0 + nb * 8 + 2 * t + (e & 1), lse2[e >> 1], check);
        any |= S[nb][e] != 0.f;
      }
    if (check && !__any_sync(0xffffffffu, any)) continue;

    float dP[BN / 8][4];
    zero(dP);
    mma32_rows_bt<X3, BN, HD, P, P>(dP, sdOw, cV, lane);
#pragma unroll
    for (int nb = 0; nb < BN / 8; ++nb)
#pragma unroll
      for (int e = 0; e < 4; ++e) dP[nb][e] = dscore(S[nb][e], dP[nb][e], dlt[e >> 1]);
    mma32_regs_b<X3, HD, BN, P>(dQ, dP, cK, 0, lane);
  }
  ptx::cp_async_wait<0>();

  if (r0 >= p.L) return;
  float* dqg = static_cast<float*>(bp.dq) + bh * p.L * p.E;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t row = r0 + g + 8 * r;
    if (row >= p.L) continue;
#pragma unroll
    for (int nb = 0; nb < HD / 8; ++nb) {
      const int col = nb * 8 + 2 * t;
      store_out_pair_f32(dqg + row * p.E + col, col, E, dQ[nb][2 * r] * p.scale, dQ[nb][2 * r + 1] * p.scale);
    }
  }
}

}  // namespace flash_attn_ext::cuda::bwd
