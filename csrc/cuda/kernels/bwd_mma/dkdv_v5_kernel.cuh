// v5 of the dK/dV kernel (NOTES_bwd.md, "v5"): the default since it measured 1.00-1.09x v4's
// forward + backward on the H200 (bf16, E 64/128, N 1k-16k); FLASH_ATTN_EXT_BWD_VARIANT=v4 runs the
// rung below (dkdv_kernel.cuh), =v5x2 the two-CTA form (below). Same CTA
// (128 keys, 8 warps of 16 keys), shared memory, cp.async pipeline, dS^T staging, dQ reductions
// and outputs as v4. Two changes, both aimed at the latency ncu measured on v4 (1 CTA of 8 warps per
// SM, tensor pipe 24 % busy, warps waiting on ldmatrix results, 255 registers with spills at HD = 128):
//
// 1. Query steps of QS = 32 (v5) or 16 (v5x2) instead of the whole 64-query block. v4 holds S^T and
//    dP^T of all 64 queries in float beside dK and dV: at HD = 128, 128 + 32 + 32 = 192 registers
//    of live tiles before any fragment or address. Per step of QS queries the warp computes S^T,
//    P^T, dV += P^T dO, dP^T, dS^T, dK += dS^T Q on 16 x QS tiles: 160 registers at QS = 32, 144 at
//    16. Exact by construction: dV and dK are sums over queries and every per-element formula is
//    v4's; only the order in which the query chunks are added changes (float rounding).
// 2. Fragments loaded ahead (pipelined_ops.cuh): every product issues its ldmatrix kFragDepth = 3
//    steps (6 mma) before the mma that consumes it, into the registers change 1 freed.
//    ptxas (sm_90, HD = 128): v4 feeds 40 % of its ldmatrix-fed mma with at most 2 mma in between,
//    v5 14 %; median 3 -> 6 (NOTES_bwd.md has the table and how it was counted).
//
// Costs: the A operands of S^T and dP^T (the warp's 16 K and V rows) are read once per step instead
// of once per block: per warp and query block at HD = 128, 104 KiB of ldmatrix traffic instead of
// 96 (QS = 32) or 120 (QS = 16); at 128 B/clk per SM that caps this kernel near 365 (330) TFLOP/s,
// against the 148 measured for v4: not the limit yet.
//
// v5x2, HD <= 64 only (HD 96 and 128 run v5): QS = 16 and __launch_bounds__ minimum 2, i.e. at most
// 128 registers, so two CTAs of 8 warps fit per SM where the shared memory allows it (109 KiB at
// HD = 64: two fit in sm_90's 228 KiB, not in sm_80's 164 KiB). Twice the warps to hide latency,
// bought with spills at HD = 64 (ptxas: ~280 bytes); the device run decides.
//
// Not done, and why: P^T and dS^T through shared memory, as FA2 does, would replace only the packed
// operands (8 registers each per step), not the float tiles that dS = P * (dP - D) needs together,
// and would add shared-memory traffic to a kernel that already re-reads Q and dO per product.
#pragma once

#include <cmath>
#include <cstdint>

#include "../../ptx/cp_async.cuh"
#include "../../ptx/red.cuh"
#include "../v3_mma/tile_copy.cuh"
#include "args.h"
#include "dkdv_kernel.cuh"
#include "pipelined_ops.cuh"
#include "probs.cuh"
#include "tile_sizes.h"
#include "warp_ops.cuh"

namespace flash_attn_ext::cuda::bwd {

// Fragments in flight per product (change 2): 3 x 4 registers beyond v4's one step.
constexpr int kFragDepth = 3;

// QS: queries per warp step (a divisor of kBlockM, whole k16 steps). MIN_BLOCKS: __launch_bounds__'
// minimum CTAs per SM; 2 caps the kernel at 128 registers (two CTAs of 8 warps per SM).
template <bool BF16, int HD, bool CAUSAL, int QS, int MIN_BLOCKS>
__global__ void __launch_bounds__(TileSizes<HD>::kThreads, MIN_BLOCKS)
    bwd_dkdv_v5_kernel(const __grid_constant__ BwdArgs a) {
  using T = TileSizes<HD>;
  using Sm = DkDvSmem<HD>;
  constexpr int BM = T::kBlockM, BN = T::kBlockN, NT = T::kThreads, P = T::kPitch, DP = T::kDsPitch;
  static_assert(BM % QS == 0 && QS % 16 == 0, "whole k16 steps per query step");
  constexpr int FD = kFragDepth;
  const BwdParams& bp = a.p;
  const FwdParams& p = bp.fwd;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  uint16_t* sK = reinterpret_cast<uint16_t*>(smem_raw);
  uint16_t* sV = sK + Sm::kKV;
  uint16_t* sQ = sV + Sm::kKV;       // 2 stages
  uint16_t* sdO = sQ + 2 * Sm::kQ;   // 2 stages
  uint16_t* sdS = sdO + 2 * Sm::kQ;  // 2 buffers of dS^T: key-major, kBlockN x kBlockM
  float* sLse2 = reinterpret_cast<float*>(sdS + 2 * Sm::kDs);  // 2 stages of kBlockM
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

  const uint16_t* kg = static_cast<const uint16_t*>(p.k) + b * p.k_sb + hk * p.k_sh + n0 * p.k_sl;
  const uint16_t* vg = static_cast<const uint16_t*>(p.v) + b * p.v_sb + hk * p.v_sh + n0 * p.v_sl;
  const int E = static_cast<int>(p.E), Ev = static_cast<int>(p.Ev);
  v3::copy_tile<uint16_t, BN, HD, P, NT>(sK, kg, p.k_sl, keys_valid, E, a.k_vec, tid);
  v3::copy_tile<uint16_t, BN, HD, P, NT>(sV, vg, p.v_sl, keys_valid, Ev, a.v_vec, tid);

  auto item_head = [&](int64_t it) { return hk * p.group + it / per_head; };
  auto item_row0 = [&](int64_t it) { return (mb_begin + it % per_head) * BM; };

  auto load_item = [&](int64_t it, int stage) {
    const int64_t h = item_head(it), m0 = item_row0(it);
    const int rows = static_cast<int>(p.L - m0 < BM ? p.L - m0 : BM);
    const uint16_t* qg = static_cast<const uint16_t*>(p.q) + b * p.q_sb + h * p.q_sh + m0 * p.q_sl;
    const uint16_t* dog = static_cast<const uint16_t*>(bp.dout) + b * bp.do_sb + h * bp.do_sh + m0 * bp.do_sl;
    v3::copy_tile<uint16_t, BM, HD, P, NT>(sQ + stage * Sm::kQ, qg, p.q_sl, rows, E, a.q_vec, tid);
    v3::copy_tile<uint16_t, BM, HD, P, NT>(sdO + stage * Sm::kQ, dog, bp.do_sl, rows, Ev, a.do_vec, tid);
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
  const uint16_t* sKw = sK + warp * 16 * P;
  const uint16_t* sVw = sV + warp * 16 * P;
  const bool with_dq = a.dq_accum != nullptr;

  // v4's dQ step with pipelined fragments: dQ = dS K over all kBlockN keys; warp w takes query rows
  // 16 (w % 4).. and 32-feature chunks w / 4, w / 4 + 2, ...
  auto dq_step = [&](int64_t it) {
    const int buf = static_cast<int>(it & 1);
    if (sLive[buf] != it + 1) return;
    const int64_t h = item_head(it), qrow0 = item_row0(it) + (warp % 4) * 16;
    if (qrow0 >= p.L) return;
    const uint16_t* cdS = sdS + buf * Sm::kDs;
    float* dqg = a.dq_accum + ((b * p.H + h) * p.L) * p.E;
#pragma unroll 1
    for (int c0 = (warp / 4) * 32; c0 < HD && c0 < E; c0 += 64) {
      constexpr int CW = HD < 32 ? HD : 32;
      float acc[CW / 8][4];
      zero(acc);
      mma_trans_b_pipe<BF16, CW, BN, DP, P, FD>(acc, cdS, (warp % 4) * 16, sK, c0, lane);
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
    uint16_t* sdSw = sdS + stage * Sm::kDs + warp * 16 * DP;

    const int64_t h = item_head(it), m0 = item_row0(it);
    const ProbRecompute<CAUSAL> prob{p, b * p.m_sb + h * p.m_sh};
    float* dsc = static_cast<float*>(bp.dscores);
    bool item_live = false;  // some step of this warp's slice has a nonzero dS^T

    // Not unrolled: the steps must not be interleaved, or their tiles are live together and the
    // register peak is v4's again.
#pragma unroll 1
    for (int hq = 0; hq < BM / QS; ++hq) {
      const int64_t q0 = m0 + hq * QS;  // this step's first query
      const uint16_t* cQ = sQ + stage * Sm::kQ + hq * QS * P;
      const uint16_t* cdO = sdO + stage * Sm::kQ + hq * QS * P;
      const float* cLse2 = sLse2 + stage * BM + hq * QS;
      const float* cD = sDelta + stage * BM + hq * QS;

      // Warp-uniform, as in v4, on this step's rows.
      bool live = q0 < p.L && kw0 < p.S && (!CAUSAL || kw0 <= q0 + QS - 1 + off);
      const bool check = kw0 + 16 > p.S || q0 + QS > p.L || (CAUSAL && kw0 + 15 > q0 + off) ||
                         p.mask_kind != MaskKind::kNone;
      float St[QS / 8][4];  // S^T, then P^T
      if (live) {
        zero(St);
        mma_rows_bt_pipe<BF16, QS, HD, P, P, FD>(St, sKw, cQ, lane);
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

      if (live) {
        {
          uint32_t pa[QS / 16][4];
          regs_to_a<BF16, QS>(pa, St);
          mma_regs_b_pipe<BF16, HD, QS, P, FD>(dV, pa, cdO, lane);
        }
        float dPt[QS / 8][4];
        zero(dPt);
        mma_rows_bt_pipe<BF16, QS, HD, P, P, FD>(dPt, sVw, cdO, lane);
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
        uint32_t dsa[QS / 16][4];
        regs_to_a<BF16, QS>(dsa, dPt);
        mma_regs_b_pipe<BF16, HD, QS, P, FD>(dK, dsa, cQ, lane);
        if (with_dq) {
          // Packed pairs are adjacent queries of one key row: the key-major dS^T layout.
#pragma unroll
          for (int kk = 0; kk < QS / 16; ++kk) {
            uint32_t* r0 = reinterpret_cast<uint32_t*>(sdSw + g * DP + hq * QS + kk * 16 + 2 * t);
            uint32_t* r1 = reinterpret_cast<uint32_t*>(sdSw + (g + 8) * DP + hq * QS + kk * 16 + 2 * t);
            r0[0] = dsa[kk][0];
            r1[0] = dsa[kk][1];
            r0[4] = dsa[kk][2];
            r1[4] = dsa[kk][3];
          }
        }
        item_live = true;
      } else if (with_dq) {
        for (int i = lane; i < 16 * QS / 2; i += 32)
          reinterpret_cast<uint32_t*>(sdSw + (i / (QS / 2)) * DP + hq * QS)[i % (QS / 2)] = 0u;
      }
    }

    if (with_dq && item_live && lane == 0) atomicMax(&sLive[stage], static_cast<int>(it + 1));
  }

  ptx::cp_async_wait<0>();  // a CTA with no query block still has K and V in flight

  uint16_t* dkg = static_cast<uint16_t*>(bp.dk) + ((b * p.Hkv + hk) * p.S) * p.E;
  uint16_t* dvg = static_cast<uint16_t*>(bp.dv) + ((b * p.Hkv + hk) * p.S) * p.Ev;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t key = kw0 + g + 8 * r;
    if (key >= p.S) continue;
#pragma unroll
    for (int nb = 0; nb < HD / 8; ++nb) {
      const int col = nb * 8 + 2 * t;
      store_out_pair<BF16>(dkg + key * p.E + col, col, E, dK[nb][2 * r] * p.scale, dK[nb][2 * r + 1] * p.scale);
      store_out_pair<BF16>(dvg + key * p.Ev + col, col, Ev, dV[nb][2 * r], dV[nb][2 * r + 1]);
    }
  }
}

}  // namespace flash_attn_ext::cuda::bwd
