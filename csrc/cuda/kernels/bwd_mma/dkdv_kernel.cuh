// The backward's main kernel (FlashAttention-2's split): one CTA per (batch, kv head, block
// of kBlockN = 128 keys, 8 warps). It loops over the query heads of its GQA group and, for each, over the
// query blocks that can see its keys, recomputing the forward's probabilities from the saved
// LSE instead of storing them: O(L + S) memory instead of O(L * S).
//
// Per query block of kBlockM rows, warp w (keys 16w..16w+15 of the block) computes
//   S^T = K_w Q^T (16 x kBlockM)      P^T = exp2(S^T * scale*log2e - lse*log2e)
//   dV_w += P^T dO                    dP^T = V_w dO^T
//   dS^T = P^T * (dP^T - D)           dK_w += dS^T Q
// with everything in the transposed orientation, so each warp's dK and dV rows stay in its
// registers across every query block and head of the group: no atomics for dK/dV, and the
// GQA sum happens in registers. dQ needs a sum over the CTA's keys instead: each warp stores
// its dS^T slice (16-bit) in shared memory, then the 8 warps split the block's dQ = dS K over
// all kBlockN keys (4 slices of 16 rows x 2 groups of 32-feature chunks) and add it into a
// float32 buffer with 16-byte reductions.
// In deterministic mode that step is skipped and dq_kernel.cuh computes dQ without atomics.
//
// Q and dO blocks stream through a two-stage cp.async pipeline; K and V are loaded once.
// Causal: query blocks entirely above this key block are never visited, and only warp tiles
// that cross the diagonal (or a sequence tail, or any mask) pay for per-element checks.
#pragma once

#include <cmath>
#include <cstdint>

#include "../../ptx/cp_async.cuh"
#include "../../ptx/red.cuh"
#include "../v3_mma/tile_copy.cuh"
#include "args.h"
#include "probs.cuh"
#include "tile_sizes.h"
#include "warp_ops.cuh"

namespace flash_attn_ext::cuda::bwd {

template <int HD>
struct DkDvSmem {
  using T = TileSizes<HD>;
  static constexpr int kKV = T::kBlockN * T::kPitch;  // one of K, V
  static constexpr int kQ = T::kBlockM * T::kPitch;   // one stage of Q or dO
  static constexpr int kDs = T::kBlockN * T::kDsPitch;
  // K, V, 2 stages of Q and dO, 2 dS^T buffers (16-bit); 2 stages of lse2 and D; 2 live tags.
  static constexpr size_t kBytes = 2 * (2 * kKV + 4 * kQ + 2 * kDs) + 4 * T::kBlockM * sizeof(float) + 2 * sizeof(int);
};

// Stores one 16-bit pair (or one element where the pair would straddle E or be misaligned).
template <bool BF16>
__device__ __forceinline__ void store_out_pair(uint16_t* dst, int64_t col, int64_t cols, float x, float y) {
  if (col + 1 < cols && (cols % 2) == 0) {
    *reinterpret_cast<uint32_t*>(dst) = pack2<BF16>(x, y);
  } else if (col < cols) {
    dst[0] = static_cast<uint16_t>(pack2<BF16>(x, 0.f) & 0xffffu);
    if (col + 1 < cols) dst[1] = static_cast<uint16_t>(pack2<BF16>(y, 0.f) & 0xffffu);
  }
}

// Adds a warp's dQ chunk (16 rows x CW features at column c0, times scale) into the float32
// buffer. With VEC4 (E a multiple of 4), lanes t and t^1 swap half their pairs so that each
// holds four adjacent features of one row: one 16-byte reduction instead of four scalar
// atomics. The reductions, not the products, bounded the first version (see NOTES_bwd.md).
template <int CW>
__device__ __forceinline__ void add_dq_chunk(const float (&acc)[CW / 8][4], float* dqg, int64_t qrow0, int c0,
                                             int64_t L, int E, bool vec4, float scale, int g, int t) {
  if (vec4) {
    const bool even = (t & 1) == 0;
#pragma unroll
    for (int nb = 0; nb < CW / 8; ++nb) {
      // Even t keeps row g and receives its partner's row-g pair; odd t keeps row g + 8.
      const float s0 = even ? acc[nb][2] : acc[nb][0], s1 = even ? acc[nb][3] : acc[nb][1];
      const float r0 = __shfl_xor_sync(0xffffffffu, s0, 1), r1 = __shfl_xor_sync(0xffffffffu, s1, 1);
      const int64_t row = qrow0 + g + (even ? 0 : 8);
      const int col = c0 + nb * 8 + (t >> 1) * 4;
      const float x0 = even ? acc[nb][0] : r0, x1 = even ? acc[nb][1] : r1;
      const float x2 = even ? r0 : acc[nb][2], x3 = even ? r1 : acc[nb][3];
      if (row < L && col < E) ptx::red_add_f32x4(dqg + row * E + col, x0 * scale, x1 * scale, x2 * scale, x3 * scale);
    }
    return;
  }
#pragma unroll
  for (int nb = 0; nb < CW / 8; ++nb)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t row = qrow0 + g + 8 * (e >> 1);
      const int col = c0 + nb * 8 + 2 * t + (e & 1);
      if (row < L && col < E) atomicAdd(dqg + row * E + col, acc[nb][e] * scale);
    }
}

template <bool BF16, int HD, bool CAUSAL>
__global__ void __launch_bounds__(TileSizes<HD>::kThreads, 1) bwd_dkdv_kernel(const __grid_constant__ BwdArgs a) {
  using T = TileSizes<HD>;
  using Sm = DkDvSmem<HD>;
  constexpr int BM = T::kBlockM, BN = T::kBlockN, NT = T::kThreads, P = T::kPitch, DP = T::kDsPitch;
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
  // sLive[i]: 1 + the last item whose dS^T in buffer i has a nonzero warp slice. Tags instead of
  // flags: nothing ever needs resetting, so no barrier orders a reset against the setters.
  int* sLive = reinterpret_cast<int*>(sDelta + 2 * BM);

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int64_t kb = blockIdx.x % a.n_kblocks, bhk = blockIdx.x / a.n_kblocks;
  const int64_t b = bhk / p.Hkv, hk = bhk % p.Hkv;
  const int64_t n0 = kb * BN;
  const int keys_valid = static_cast<int>(p.S - n0 < BN ? p.S - n0 : BN);
  const int64_t off = p.causal_offset;

  // Query rows below n0 - off cannot see any key of this block.
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

  // dQ rows of item `it` from its dS^T buffer: dQ = dS K over all kBlockN keys. Warp w: query
  // rows 16 (w % 4).. of the block, 32-feature chunks w / 4, w / 4 + 2, ...
  auto dq_step = [&](int64_t it) {
    const int buf = static_cast<int>(it & 1);
    if (sLive[buf] != it + 1) return;  // no warp saw anything: nothing to add
    const int64_t h = item_head(it), qrow0 = item_row0(it) + (warp % 4) * 16;
    if (qrow0 >= p.L) return;
    const uint16_t* cdS = sdS + buf * Sm::kDs;
    float* dqg = a.dq_accum + ((b * p.H + h) * p.L) * p.E;
#pragma unroll 1
    for (int c0 = (warp / 4) * 32; c0 < HD && c0 < E; c0 += 64) {
      constexpr int CW = HD < 32 ? HD : 32;  // the accumulator stays at 16 registers
      float acc[CW / 8][4];
      zero(acc);
#pragma unroll
      for (int kk = 0; kk < BN / 16; ++kk) {
        uint32_t af[4];
        load_a_trans<DP>(af, cdS, (warp % 4) * 16, kk, lane);
        mma_step_b_rows<BF16, CW, P>(acc, af, sK, kk, c0, lane);
      }
      add_dq_chunk<CW>(acc, dqg, qrow0, c0, p.L, E, a.dq_vec4, p.scale, g, t);
    }
  };

  // One barrier per item: the dQ step of item it - 1 runs after the barrier that opens item it
  // (its dS^T is complete by then), from the other dS^T buffer than item it writes.
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
    const uint16_t* cQ = sQ + stage * Sm::kQ;
    const uint16_t* cdO = sdO + stage * Sm::kQ;
    const float* cLse2 = sLse2 + stage * BM;
    const float* cD = sDelta + stage * BM;

    // Warp-uniform: the warp's first key is the one most rows see.
    bool live = kw0 < p.S && (!CAUSAL || kw0 <= m0 + BM - 1 + off);
    const bool check = kw0 + 16 > p.S || m0 + BM > p.L || (CAUSAL && kw0 + 15 > m0 + off) ||
                       p.mask_kind != MaskKind::kNone;
    float St[BM / 8][4];  // S^T, then P^T
    if (live) {
      zero(St);
      mma_rows_bt<BF16, BM, HD, P, P>(St, sKw, cQ, lane);
      const ProbRecompute<CAUSAL> prob{p, b * p.m_sb + h * p.m_sh};
      bool any = false;
#pragma unroll
      for (int nb = 0; nb < BM / 8; ++nb)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int qi = nb * 8 + 2 * t + (e & 1);
          St[nb][e] = prob(St[nb][e], m0 + qi, kw0 + g + 8 * (e >> 1), cLse2[qi], check);
          any |= St[nb][e] != 0.f;
        }
      if (check) live = __any_sync(0xffffffffu, any);
    }

    if (live) {
      {
        uint32_t pa[BM / 16][4];
        regs_to_a<BF16, BM>(pa, St);
        mma_regs_b<BF16, HD, BM, P>(dV, pa, cdO, lane);
      }
      float dPt[BM / 8][4];
      zero(dPt);
      mma_rows_bt<BF16, BM, HD, P, P>(dPt, sVw, cdO, lane);
      float* dsc = static_cast<float*>(bp.dscores);
#pragma unroll
      for (int nb = 0; nb < BM / 8; ++nb)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int qi = nb * 8 + 2 * t + (e & 1);
          dPt[nb][e] = dscore(St[nb][e], dPt[nb][e], cD[qi]);
          if (dsc != nullptr) {
            const int64_t row = m0 + qi, key = kw0 + g + 8 * (e >> 1);
            if (row < p.L && key < p.S) dsc[((b * p.H + h) * p.L + row) * p.S + key] = dPt[nb][e];
          }
        }
      uint32_t dsa[BM / 16][4];
      regs_to_a<BF16, BM>(dsa, dPt);
      mma_regs_b<BF16, HD, BM, P>(dK, dsa, cQ, lane);
      if (with_dq) {
        // Packed pairs are adjacent queries of one key row: the key-major dS^T layout.
#pragma unroll
        for (int kk = 0; kk < BM / 16; ++kk) {
          uint32_t* r0 = reinterpret_cast<uint32_t*>(sdSw + g * DP + kk * 16 + 2 * t);
          uint32_t* r1 = reinterpret_cast<uint32_t*>(sdSw + (g + 8) * DP + kk * 16 + 2 * t);
          r0[0] = dsa[kk][0];
          r1[0] = dsa[kk][1];
          r0[4] = dsa[kk][2];
          r1[4] = dsa[kk][3];
        }
      }
    } else if (with_dq) {
      for (int i = lane; i < 16 * BM / 2; i += 32)
        reinterpret_cast<uint32_t*>(sdSw + (i / (BM / 2)) * DP)[i % (BM / 2)] = 0u;
    }

    if (with_dq && live && lane == 0) atomicMax(&sLive[stage], static_cast<int>(it + 1));
  }

  ptx::cp_async_wait<0>();  // a CTA with no query block still has K and V in flight

  // dK (scaled) and dV rows of this warp's keys, straight from the accumulators.
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
