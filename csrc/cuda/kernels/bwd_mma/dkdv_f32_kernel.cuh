// The float32 dK/dV kernel: v5's algorithm (dkdv_v5_kernel.cuh) with float32 tiles and TF32 or
// 3xTF32 (X3) products on m16n8k8 (warp_ops32.cuh). What differs from v5, and why:
//  - tiles (tile_sizes.h, TileSizesF32): 64 keys per CTA (4 warps of 16 keys) and 32-query blocks,
//    each block one warp step, because float32 tiles take twice the shared memory;
//  - fragments from plain float / float2 shared-memory loads (no ldmatrix for 32-bit elements),
//    the k index permuted as in the forward so that P^T and dS^T feed the next product straight
//    from their accumulator registers;
//  - dS^T is staged in float32 for the dQ step (dQ = dS K over the CTA's 64 keys, float32
//    reductions into dq_accum, which for float32 inputs is dq itself, zeroed by the host).
// Everything else is v5's: two-stage cp.async pipeline over (GQA head, query block) items, the
// warp-uniform live/check tests, P from the saved LSE (probs.cuh), dS = 0 wherever P = 0, the
// float-mask gradient dS written when asked, dK scaled once at the end, rows past S not written.
#pragma once

#include <cmath>
#include <cstdint>

#include "../../ptx/cp_async.cuh"
#include "../../ptx/red.cuh"
#include "../v3_mma/tile_copy.cuh"
#include "args.h"
#include "dkdv_kernel.cuh"
#include "probs.cuh"
#include "tile_sizes.h"
#include "warp_ops.cuh"
#include "warp_ops32.cuh"

namespace flash_attn_ext::cuda::bwd {

template <int HD>
struct DkDvSmemF32 {
  using T = TileSizesF32<HD>;
  static constexpr int kKV = T::kBlockN * T::kPitch;  // one of K, V (floats)
  static constexpr int kQ = T::kBlockM * T::kPitch;   // one stage of Q or dO
  static constexpr int kDs = T::kBlockN * T::kDsPitch;
  // K, V, 2 stages of Q and dO, 2 dS^T buffers; 2 stages of lse2 and D; 2 live tags.
  static constexpr size_t kBytes =
      sizeof(float) * (2 * kKV + 4 * kQ + 2 * kDs) + 4 * T::kBlockM * sizeof(float) + 2 * sizeof(int);
};

template <bool X3, int HD, bool CAUSAL>
__global__ void __launch_bounds__(TileSizesF32<HD>::kThreads, 1)
    bwd_dkdv_f32_kernel(const __grid_constant__ BwdArgs a) {
  using T = TileSizesF32<HD>;
  using Sm = DkDvSmemF32<HD>;
  constexpr int BM = T::kBlockM, BN = T::kBlockN, NT = T::kThreads, P = T::kPitch, DP = T::kDsPitch;
  constexpr int QS = T::kQueryStep;
  static_assert(BM % QS == 0 && QS % 8 == 0, "whole k8 steps per query step");
  const BwdParams& bp = a.p;
  const FwdParams& p = bp.fwd;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* sK = reinterpret_cast<float*>(smem_raw);
  float* sV = sK + Sm::kKV;
  float* sQ = sV + Sm::kKV;       // 2 stages
  float* sdO = sQ + 2 * Sm::kQ;   // 2 stages
  float* sdS = sdO + 2 * Sm::kQ;  // 2 buffers of dS^T: key-major, kBlockN x kBlockM
  float* sLse2 = sdS + 2 * Sm::kDs;  // 2 stages of kBlockM
  float* sDelta = sLse2 + 2 * BM;
  // sLive[i]: 1 + the last item whose dS^T in buffer i has a nonzero warp slice (tags: never reset).
  int* sLive = reinterpret_cast<int*>(sDelta + 2 * BM);

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int64_t kb = blockIdx.x % a.n_kblocks, bhk = blockIdx.x / a.n_kblocks;
  const int64_t b = bhk / p.Hkv, hk = bhk % p.Hkv;
  const int64_t n0 = kb * BN;
  const int keys_valid = static_cast<int>(p.S - n0 < BN ? p.S - n0 : BN);
  const int64_t off = p.causal_offset;

  const int64_t n_mblocks = (p.L + BM - 1) / BM;
  int64_t mb_begin = 0;
  if (CAUSAL) {
    const int64_t first_row = n0 - off > 0 ? n0 - off : 0;
    mb_begin = first_row >= p.L ? n_mblocks : first_row / BM;
  }
  const int64_t per_head = n_mblocks - mb_begin;
  const int64_t n_items = per_head * p.group;

  const float* kg = static_cast<const float*>(p.k) + b * p.k_sb + hk * p.k_sh + n0 * p.k_sl;
  const float* vg = static_cast<const float*>(p.v) + b * p.v_sb + hk * p.v_sh + n0 * p.v_sl;
  const int E = static_cast<int>(p.E), Ev = static_cast<int>(p.Ev);
  v3::copy_tile<float, BN, HD, P, NT>(sK, kg, p.k_sl, keys_valid, E, a.k_vec, tid);
  v3::copy_tile<float, BN, HD, P, NT>(sV, vg, p.v_sl, keys_valid, Ev, a.v_vec, tid);

  auto item_head = [&](int64_t it) { return hk * p.group + it / per_head; };
  auto item_row0 = [&](int64_t it) { return (mb_begin + it % per_head) * BM; };

  auto load_item = [&](int64_t it, int stage) {
    const int64_t h = item_head(it), m0 = item_row0(it);
    const int rows = static_cast<int>(p.L - m0 < BM ? p.L - m0 : BM);
    const float* qg = static_cast<const float*>(p.q) + b * p.q_sb + h * p.q_sh + m0 * p.q_sl;
    const float* dog = static_cast<const float*>(bp.dout) + b * bp.do_sb + h * bp.do_sh + m0 * bp.do_sl;
    v3::copy_tile<float, BM, HD, P, NT>(sQ + stage * Sm::kQ, qg, p.q_sl, rows, E, a.q_vec, tid);
    v3::copy_tile<float, BM, HD, P, NT>(sdO + stage * Sm::kQ, dog, bp.do_sl, rows, Ev, a.do_vec, tid);
    const int64_t row_base = (b * p.H + h) * p.L + m0;
    for (int i = tid; i < BM; i += NT) {
      float lse2 = INFINITY, d = 0.f;
      if (i < rows) {
        const float l = p.lse[row_base + i];
        lse2 = l == -INFINITY ? INFINITY : l * 1.4426950408889634f;
        d = static_cast<const float*>(bp.delta)[row_base + i];
      }
      sLse2[stage * BM + i] = lse2;
      sDelta[stage * BM + i] = d;
    }
  };

  if (tid < 2) sLive[tid] = 0;
  if (n_items > 0) load_item(0, 0);
  ptx::cp_async_commit();

  float dK[HD / 8][4], dV[HD / 8][4];
  zero(dK);
  zero(dV);
  const int64_t kw0 = n0 + warp * 16;  // this warp's first key
  const float* sKw = sK + warp * 16 * P;
  const float* sVw = sV + warp * 16 * P;
  const bool with_dq = a.dq_accum != nullptr;

  // dQ = dS K over the CTA's kBlockN keys; warp w takes query rows 16 (w % 2).. and 32-feature
  // chunks w / 2, w / 2 + 2, ...
  auto dq_step = [&](int64_t it) {
    const int buf = static_cast<int>(it & 1);
    if (sLive[buf] != it + 1) return;
    const int64_t h = item_head(it), qrow0 = item_row0(it) + (warp % 2) * 16;
    if (qrow0 >= p.L) return;
    const float* cdS = sdS + buf * Sm::kDs;
    float* dqg = a.dq_accum + ((b * p.H + h) * p.L) * p.E;
#pragma unroll 1
    for (int c0 = (warp / 2) * 32; c0 < HD && c0 < E; c0 += 64) {
      constexpr int CW = HD < 32 ? HD : 32;
      float acc[CW / 8][4];
      zero(acc);
      mma32_trans_b<X3, CW, BN, DP, P>(acc, cdS, (warp % 2) * 16, sK, c0, lane);
      add_dq_chunk<CW>(acc, dqg, qrow0, c0, p.L, E, a.dq_vec4, p.scale, g, t);
    }
  };

  for (int64_t it = 0; it <= n_items; ++it) {
    const int stage = static_cast<int>(it & 1);
    ptx::cp_async_wait<0>();
    __syncthreads();  // stage `stage` landed; item it - 1 is complete; item it - 2's buffers are free
    if (it + 1 < n_items) load_item(it + 1, stage ^ 1);
    ptx::cp_async_commit();
    if (with_dq && it > 0) dq_step(it - 1);
    if (it == n_items) break;

    const int64_t h = item_head(it), m0 = item_row0(it);
    const ProbRecompute<CAUSAL> prob{p, b * p.m_sb + h * p.m_sh};
    float* dsc = static_cast<float*>(bp.dscores);
    bool item_live = false;  // some step of this warp's slice has a nonzero dS^T

    // Query steps of QS rows, not unrolled (v5's change 1): S^T and dP^T of one step only are live
    // beside dK and dV.
#pragma unroll 1
    for (int hq = 0; hq < BM / QS; ++hq) {
      const int64_t q0 = m0 + hq * QS;  // this step's first query
      const float* cQ = sQ + stage * Sm::kQ + hq * QS * P;
      const float* cdO = sdO + stage * Sm::kQ + hq * QS * P;
      const float* cLse2 = sLse2 + stage * BM + hq * QS;
      const float* cD = sDelta + stage * BM + hq * QS;

      // Warp-uniform, as in v5.
      bool live = q0 < p.L && kw0 < p.S && (!CAUSAL || kw0 <= q0 + QS - 1 + off);
      const bool check = kw0 + 16 > p.S || q0 + QS > p.L || (CAUSAL && kw0 + 15 > q0 + off) ||
                         p.mask_kind != MaskKind::kNone;
      float St[QS / 8][4];  // S^T, then P^T
      if (live) {
        zero(St);
        mma32_rows_bt<X3, QS, HD, P, P>(St, sKw, cQ, lane);
        bool any = false;
#pragma unroll
        for (int nb = 0; nb < QS / 8; ++nb)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int qi = nb * 8 + 2 * t + (e & 1);
            St[nb][e] = prob(St[nb][e], q0 + qi, kw0 + g + 8 * (e >> 1), cLse2[qi], check);
            any |= St[nb][e] != 0.f;
          }
        if (check) live = __any_sync(0xffffffffu, any);
      }

      float* sdSw = sdS + stage * Sm::kDs + warp * 16 * DP + hq * QS;
      if (live) {
        mma32_regs_b<X3, HD, QS, P>(dV, St, cdO, 0, lane);
        float dPt[QS / 8][4];
        zero(dPt);
        mma32_rows_bt<X3, QS, HD, P, P>(dPt, sVw, cdO, lane);
#pragma unroll
        for (int nb = 0; nb < QS / 8; ++nb)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int qi = nb * 8 + 2 * t + (e & 1);
            dPt[nb][e] = dscore(St[nb][e], dPt[nb][e], cD[qi]);
            if (dsc != nullptr) {
              const int64_t row = q0 + qi, key = kw0 + g + 8 * (e >> 1);
              if (row < p.L && key < p.S) dsc[((b * p.H + h) * p.L + row) * p.S + key] = dPt[nb][e];
            }
          }
        mma32_regs_b<X3, HD, QS, P>(dK, dPt, cQ, 0, lane);
        if (with_dq) {
#pragma unroll
          for (int nb = 0; nb < QS / 8; ++nb) {
            *reinterpret_cast<float2*>(sdSw + g * DP + nb * 8 + 2 * t) = make_float2(dPt[nb][0], dPt[nb][1]);
            *reinterpret_cast<float2*>(sdSw + (g + 8) * DP + nb * 8 + 2 * t) = make_float2(dPt[nb][2], dPt[nb][3]);
          }
        }
        item_live = true;
      } else if (with_dq) {
        for (int i = lane; i < 16 * QS; i += 32) sdSw[(i / QS) * DP + i % QS] = 0.f;
      }
    }
    if (with_dq && item_live && lane == 0) atomicMax(&sLive[stage], static_cast<int>(it + 1));
  }

  ptx::cp_async_wait<0>();  // a CTA with no query block still has K and V in flight

  float* dkg = static_cast<float*>(bp.dk) + ((b * p.Hkv + hk) * p.S) * p.E;
  float* dvg = static_cast<float*>(bp.dv) + ((b * p.Hkv + hk) * p.S) * p.Ev;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t key = kw0 + g + 8 * r;
    if (key >= p.S) continue;
#pragma unroll
    for (int nb = 0; nb < HD / 8; ++nb) {
      const int col = nb * 8 + 2 * t;
      store_out_pair_f32(dkg + key * p.E + col, col, E, dK[nb][2 * r] * p.scale, dK[nb][2 * r + 1] * p.scale);
      store_out_pair_f32(dvg + key * p.Ev + col, col, Ev, dV[nb][2 * r], dV[nb][2 * r + 1]);
    }
  }
}

}  // namespace flash_attn_ext::cuda::bwd
