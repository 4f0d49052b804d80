// bwd_wgmma: the attention backward on Hopper (sm_90a), dK/dV and dQ in one kernel.
//
// What changes from bwd_mma's v5 dK/dV kernel (mma.sync m16n8k16, 8 warps of 16 keys, cp.async):
// there every warp re-reads the whole Q and dO tile from shared memory with ldmatrix for each of
// its products, so the shared-memory pipe was the busiest unit (ncu, H200, bf16 E = 128: issue
// slots 28 % busy, 255 registers, 35 ms for the backward at N = 16k against SDPA flash's 17.5).
// Here the tensor cores read their operands straight from shared memory, once per warpgroup
// of 4 warps, through wgmma descriptors (FlashAttention-3's design):
// - warp specialisation as in v4_wgmma: one producer warp issues TMA copies of K and V once and of
//   Q and dO per query block into a 2-stage ring (full/empty mbarriers), and copies the rows' LSE
//   and D beside them; two consumer warpgroups of 64 keys each keep dK and dV (64 x E floats) in
//   registers for the whole query loop (setmaxnreg: 24 / 240);
// - per query block of 64 rows, each consumer warpgroup computes
//     S^T  = K_w Q^T          SS wgmma, both operands K-major
//     dP^T = V_w dO^T         SS wgmma (issued right behind S^T; P^T is computed while it runs)
//     P^T  = exp2(S^T scale log2 e - LSE log2 e),  dS^T = P^T (dP^T - D)   in registers
//     dV  += P^T dO           RS wgmma: P^T packed to 16 bits is already the A fragment, dO MN-major;
//                             issued as soon as P^T is packed, so it runs while dS^T is formed
//     dK  += dS^T Q           RS wgmma, Q MN-major
//   writes dS^T (16-bit) into shared memory, and after a barrier of both consumer warpgroups
//     dQ[:, half cw] = dS K[:, half cw]   SS wgmma, A = dS read transposed (MN-major) from the
//                                         shared dS^T of all 128 keys, B = K MN-major
//   whose float32 result it adds into dq_accum with 16-byte red.global.add (one per 4 values);
// - the same FA2 split and dq_accum protocol as bwd_mma's non-deterministic path (the host zeroes
//   and converts dq_accum); deterministic mode keeps bwd_mma.
//
// Numbers: not yet measured (prepared without a GPU); benchmarks/NOTES_bwd.md, "wgmma backward
// (prepared)" has the register and shared-memory arithmetic and the prediction.
//
// Tails: rows of Q/dO past L and keys past the maps' end are zero-filled by the TMA; rows past L
// get LSE*log2e = +inf (P = 0, D = 0), keys past S and (causal) hidden pairs are set to P = 0 in
// the blocks that need it. A row that saw no key has LSE = -inf: stored as +inf, P = 0, never
// -inf - -inf. dS = 0 wherever P = 0, so NaN/Inf in a hidden V row cannot reach dS.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "../common.cuh"
#include "../../ptx/fence.cuh"
#include "../../ptx/mbarrier.cuh"
#include "../../ptx/named_barrier.cuh"
#include "../../ptx/red.cuh"
#include "../../ptx/setmaxnreg.cuh"
#include "../../ptx/shared.cuh"
#include "../../ptx/tma.cuh"
#include "../../ptx/wgmma.cuh"
#include "config.h"

namespace flash_attn_ext::cuda::bwdwg {

constexpr int kDsBarrier = 1;  // named barrier: both consumer warpgroups' dS^T are in shared memory
constexpr uint32_t kSw128Stride = 1024;  // bytes between 8-row groups of a 128-byte swizzled tile

__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

template <int A, int B>
__device__ __forceinline__ void fence_frags(uint32_t (&r)[A][B]) {
#pragma unroll
  for (int i = 0; i < A; ++i)
#pragma unroll
    for (int j = 0; j < B; ++j) asm volatile("" : "+r"(r[i][j])::"memory");
}

// The query blocks of one CTA: for each query head of the kv head's group, blocks mb_begin ..
// n_mblocks - 1 (causal: the first block holding a row that sees key n0). Item it is head
// hk * group + it / per_head, block mb_begin + it % per_head; producer and consumers agree on it.
struct Work {
  int mb_begin, per_head, n_items;
};

template <bool CAUSAL>
__device__ __forceinline__ Work work_of(const Args& a, int n0) {
  const int n_mblocks = (a.L + kBlockM - 1) / kBlockM;
  int mb_begin = 0;
  if constexpr (CAUSAL) {
    const int64_t first_row = static_cast<int64_t>(n0) - a.causal_offset;  // first row seeing key n0
    mb_begin = first_row >= a.L ? n_mblocks : static_cast<int>(first_row > 0 ? first_row / kBlockM : 0);
  }
  const int per_head = n_mblocks - mb_begin;
  return Work{mb_begin, per_head, per_head * a.group};
}

// Producer warp (warp 0 of warpgroup 0): K and V once, then per item the Q and dO tiles by TMA
// (lane 0) and the 64 rows' LSE*log2e and D (two rows per lane) into ring stage it % kStages.
// full[st] completes on 1 expect_tx arrival + 32 lane arrivals + the TMA's bytes; a stage is
// refilled only after all 256 consumer threads released its previous use (empty[st]): each thread
// arrives itself, after its own last read of the stage's LSE/D and the wgmma reads of Q and dO, so
// compute-sanitizer's racecheck sees the ordering (one lane's arrival after a __syncwarp was correct
// under the PTX memory model but invisible to it: 5 reported hazards, none now).
template <class C>
__device__ __forceinline__ void produce(const CUtensorMap* tq, const CUtensorMap* tk, const CUtensorMap* tv,
                                        const CUtensorMap* tdo, typename C::Smem& s, const Args& a, const Work& w,
                                        int b, int hk, int n0) {
  constexpr int E = C::E;
  const int lane = threadIdx.x % 32;
  if (lane == 0) {
    ptx::tma_prefetch_desc(tq);
    ptx::tma_prefetch_desc(tdo);
    ptx::mbar_arrive_expect_tx(&s.kv_full, 2 * kBlockN * E * 2);
#pragma unroll
    for (int c = 0; c < E / kChunk; ++c) {
      ptx::tma_load_4d(ptx::smem_addr(s.k) + c * kBlockN * 128, tk, ptx::smem_addr(&s.kv_full), c * kChunk, n0, hk, b);
      ptx::tma_load_4d(ptx::smem_addr(s.v) + c * kBlockN * 128, tv, ptx::smem_addr(&s.kv_full), c * kChunk, n0, hk, b);
    }
  }
  for (int it = 0; it < w.n_items; ++it) {
    const int st = it % kStages;
    if (it >= kStages) ptx::mbar_wait(&s.empty[st], ((it / kStages) - 1) & 1);
    const int h = hk * a.group + it / w.per_head;
    const int m0 = (w.mb_begin + it % w.per_head) * kBlockM;
    if (lane == 0) {
      ptx::mbar_arrive_expect_tx(&s.full[st], 2 * kBlockM * E * 2);
#pragma unroll
      for (int c = 0; c < E / kChunk; ++c) {
        ptx::tma_load_4d(ptx::smem_addr(s.q[st]) + c * kBlockM * 128, tq, ptx::smem_addr(&s.full[st]), c * kChunk,
                         m0, h, b);
        ptx::tma_load_4d(ptx::smem_addr(s.dout[st]) + c * kBlockM * 128, tdo, ptx::smem_addr(&s.full[st]),
                         c * kChunk, m0, h, b);
      }
    }
    const int64_t base = (static_cast<int64_t>(b) * a.H + h) * a.L;
#pragma unroll
    for (int i = lane; i < kBlockM; i += 32) {
      const int row = m0 + i;
      float lse2 = INFINITY, d = 0.f;
      if (row < a.L) {
        const float l = a.lse[base + row];
        lse2 = l == -INFINITY ? INFINITY : l * 1.4426950408889634f;
        d = a.delta[base + row];
      }
      s.lse2[st][i] = lse2;
      s.delta[st][i] = d;
    }
    ptx::mbar_arrive(&s.full[st]);  // release: the LSE/D stores above are seen by the waiters
  }
}

// Consumer warpgroup cw: keys kw0 = n0 + 64 cw .. kw0 + 63.
//
// Accumulator layout (m64nN, PTX "wgmma 64xN D fragments"): thread (warp wp of the warpgroup,
// lane = 4 g + t) holds element [4 nb + 2 r + c] = row 16 wp + g + 8 r, column 8 nb + 2 t + c.
// For S^T, dP^T, dS^T rows are keys and columns queries; for dQ rows are queries.
//
// Live registers per thread (E = 128; E = 64 halves the E-sized terms):
//   whole loop: dK 64 + dV 64 = 128 floats, ~12 addresses/indices
//   S^T and dP^T in flight: + 32 + 32 = 192 + 12
//   dV in flight while dS^T is formed: P^T 32 + dP^T 32 + packed P^T 16 + packed dS^T 16 = 224 + 12
//   dK and dQ in flight: packed P^T 16 + dS^T 16 (until dV, dK retire) + dQ 32 = 192 + 12
// under the 240 that setmaxnreg gives each consumer thread.
template <typename T, class C, bool CAUSAL>
__device__ __forceinline__ void consume(typename C::Smem& s, const Args& a, const Work& w, int b, int hk, int n0,
                                        int cw) {
  constexpr int E = C::E, kDqN = C::kDqN;
  const int tid = threadIdx.x % 128, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int kw0 = n0 + cw * 64;
  const int key_r0 = kw0 + warp * 16 + g;  // this thread's keys: key_r0 and key_r0 + 8

  float dk[E / 2], dv[E / 2];
#pragma unroll
  for (int i = 0; i < E / 2; ++i) {
    dk[i] = 0.f;
    dv[i] = 0.f;
  }

  const uint32_t sk = ptx::smem_addr(s.k), sv = ptx::smem_addr(s.v);
  if (w.n_items > 0) ptx::mbar_wait(&s.kv_full, 0);

#pragma unroll 1
  for (int it = 0; it < w.n_items; ++it) {
    const int st = it % kStages, buf = it & 1;
    const int h = hk * a.group + it / w.per_head;
    const int m0 = (w.mb_begin + it % w.per_head) * kBlockM;
    const uint32_t sq = ptx::smem_addr(s.q[st]), sdo = ptx::smem_addr(s.dout[st]);
    ptx::mbar_wait(&s.full[st], (it / kStages) & 1);

    // S^T = K_w Q^T and dP^T = V_w dO^T: A rows 64 cw.. of the K/V tile, B the Q/dO tile, both
    // K-major (E contiguous); k16 step kk is 32 bytes into 128-byte row chunk kk / 4.
    float sacc[32], dpacc[32];
    ptx::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < E / 16; ++kk) {
      const uint32_t off = (kk / 4) * kBlockN * 128 + cw * 64 * 128 + (kk % 4) * 32;
      const uint32_t offq = (kk / 4) * kBlockM * 128 + (kk % 4) * 32;
      ptx::wgmma_ss<T, 64, 0>(sacc, ptx::desc_kmajor_sw128(sk + off), ptx::desc_kmajor_sw128(sq + offq), kk > 0);
    }
    ptx::wgmma_commit();
#pragma unroll
    for (int kk = 0; kk < E / 16; ++kk) {
      const uint32_t off = (kk / 4) * kBlockN * 128 + cw * 64 * 128 + (kk % 4) * 32;
      const uint32_t offq = (kk / 4) * kBlockM * 128 + (kk % 4) * 32;
      ptx::wgmma_ss<T, 64, 0>(dpacc, ptx::desc_kmajor_sw128(sv + off), ptx::desc_kmajor_sw128(sdo + offq), kk > 0);
    }
    ptx::wgmma_commit();
    ptx::wgmma_wait<1>();  // S^T done; dP^T may still run
    ptx::fence_operands(sacc);

    // P^T, with the mask only where this warpgroup's keys reach past S or (causal) past the
    // diagonal of the block's first row.
    const bool need_mask = kw0 + 64 > a.S || (CAUSAL && static_cast<int64_t>(kw0) + 63 > static_cast<int64_t>(m0) +
                                                                                               a.causal_offset);
#pragma unroll
    for (int nb = 0; nb < 8; ++nb) {
      const float2 l2 = *reinterpret_cast<const float2*>(&s.lse2[st][nb * 8 + 2 * t]);
#pragma unroll
      for (int r = 0; r < 2; ++r)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          float& x = sacc[4 * nb + 2 * r + c];
          x = fast_exp2(fmaf(x, a.scale_log2, -(c ? l2.y : l2.x)));
          if (need_mask) {
            const int key = key_r0 + 8 * r, q = m0 + nb * 8 + 2 * t + c;
            if (key >= a.S || (CAUSAL && key - q > a.causal_offset)) x = 0.f;
          }
        }
    }
    // P^T packed to 16 bits (k16 step kk = accumulator blocks 2 kk and 2 kk + 1, the m64k16 A
    // layout, as v4's pack_p) and dV += P^T dO issued at once, so the tensor cores work on it while
    // dS^T is formed. B = dO read MN-major: k16 step kk = query rows 16 kk.., 64-wide E chunks
    // kBlockM * 128 bytes apart (v4's P V descriptor).
    uint32_t pp[4][4], pds[4][4];
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
#pragma unroll
      for (int i = 0; i < 4; ++i) pp[kk][i] = pack2<T>(sacc[8 * kk + 2 * i], sacc[8 * kk + 2 * i + 1]);
    ptx::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
      ptx::wgmma_rs<T, E, 1>(dv, pp[kk], ptx::make_desc_sw128(sdo + kk * 16 * 128, kBlockM * 128, kSw128Stride), 1);
    ptx::wgmma_commit();
    ptx::wgmma_wait<1>();  // dP^T done (groups retire in order); dV may still run
    ptx::fence_operands(dpacc);

    // dS^T = P^T (dP^T - D), exactly 0 where P^T is 0, packed like P^T; dK += dS^T Q (Q MN-major).
#pragma unroll
    for (int nb = 0; nb < 8; ++nb) {
      const float2 d2 = *reinterpret_cast<const float2*>(&s.delta[st][nb * 8 + 2 * t]);
#pragma unroll
      for (int r = 0; r < 2; ++r)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int i = 4 * nb + 2 * r + c;
          dpacc[i] = sacc[i] == 0.f ? 0.f : sacc[i] * (dpacc[i] - (c ? d2.y : d2.x));
        }
    }
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
#pragma unroll
      for (int i = 0; i < 4; ++i) pds[kk][i] = pack2<T>(dpacc[8 * kk + 2 * i], dpacc[8 * kk + 2 * i + 1]);
    ptx::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
      ptx::wgmma_rs<T, E, 1>(dk, pds[kk], ptx::make_desc_sw128(sq + kk * 16 * 128, kBlockM * 128, kSw128Stride), 1);
    ptx::wgmma_commit();

    // dS^T into shared memory, key-major (row = key of the CTA, 64 queries = 128 bytes, 16-byte
    // unit u of row k at u ^ (k % 8)): the MN-major A operand of dQ = dS K. pds[kk][i] holds row
    // g + 8 (i & 1) of the warp's 16 keys, queries 8 (2 kk + (i >> 1)) + 2 t, +1; row % 8 == g.
    // A warp's 32 stores of one (kk, i) hit 32 different banks.
    const uint32_t sds = ptx::smem_addr(s.ds[buf]);
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int row = cw * 64 + warp * 16 + g + 8 * (i & 1);
        const int unit = 2 * kk + (i >> 1);
        ptx::st_shared(sds + row * 128 + ((unit ^ g) << 4) + 4 * t, pds[kk][i]);
      }
    ptx::fence_proxy_async_smem();
    // Both halves of dS^T written. Also: the other warpgroup finished its previous item's dQ
    // product (it waits for it before coming here), so ds[buf ^ 1] may be rewritten next item.
    ptx::named_bar_sync(kDsBarrier, 256);

    // dQ[:, cw half] = dS K[:, cw half] over all 128 keys: A = dS^T read MN-major (k16 step j =
    // keys 16 j.., rows of 128 bytes), B = K read MN-major (E contiguous). E = 128: half cw is
    // K chunk cw; E = 64: 32 columns, 64 bytes into the chunk's rows (the swizzle is a function
    // of the address, so a start inside the 128-byte row reads the right columns).
    float dq[kDqN / 2];
    const uint32_t kq = sk + (E == 128 ? cw * kBlockN * 128 : cw * 64);
    ptx::wgmma_fence();
#pragma unroll
    for (int j = 0; j < kBlockN / 16; ++j) {
      const uint64_t da = ptx::make_desc_sw128(sds + j * 16 * 128, kBlockM * 128, kSw128Stride);
      const uint64_t db = ptx::make_desc_sw128(kq + j * 16 * 128, kBlockN * 128, kSw128Stride);
      ptx::wgmma_ss<T, kDqN, 1, 1>(dq, da, db, j > 0);
    }
    ptx::wgmma_commit();
    ptx::wgmma_wait<1>();  // dV, dK done: this warp no longer reads Q, dO (LSE, D were read above)
    ptx::fence_operands(dv);
    ptx::fence_operands(dk);
    fence_frags(pp);
    ptx::mbar_arrive(&s.empty[st]);  // every consumer thread: release of its own reads of stage st
    ptx::wgmma_wait<0>();
    ptx::fence_operands(dq);
    fence_frags(pds);

    // dQ into dq_accum: lanes t and t ^ 1 swap one pair each, so that even t holds row g and odd t
    // row g + 8, four consecutive columns, one 16-byte reduction per 8-column block.
    const bool odd = t & 1;
    const int row = m0 + warp * 16 + g + (odd ? 8 : 0);
    float* dst = a.dq_accum + ((static_cast<int64_t>(b) * a.H + h) * a.L + row) * E + cw * kDqN + 2 * (t & ~1);
#pragma unroll
    for (int nb = 0; nb < kDqN / 8; ++nb) {
      const float s0 = odd ? dq[4 * nb + 0] : dq[4 * nb + 2];
      const float s1 = odd ? dq[4 * nb + 1] : dq[4 * nb + 3];
      const float r0 = __shfl_xor_sync(0xffffffffu, s0, 1);
      const float r1 = __shfl_xor_sync(0xffffffffu, s1, 1);
      const float v0 = odd ? r0 : dq[4 * nb + 0], v1 = odd ? r1 : dq[4 * nb + 1];
      const float v2 = odd ? dq[4 * nb + 2] : r0, v3 = odd ? dq[4 * nb + 3] : r1;
      if (row < a.L) ptx::red_add_f32x4(dst + nb * 8, v0 * a.scale, v1 * a.scale, v2 * a.scale, v3 * a.scale);
    }
  }

  // dK (times scale) and dV rows of this warpgroup's keys, 4-byte stores from the accumulators.
  T* dkg = static_cast<T*>(a.dk) + (static_cast<int64_t>(b) * a.Hkv + hk) * a.S * E;
  T* dvg = static_cast<T*>(a.dv) + (static_cast<int64_t>(b) * a.Hkv + hk) * a.S * E;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int key = key_r0 + 8 * r;
    if (key >= a.S) continue;
#pragma unroll
    for (int nb = 0; nb < E / 8; ++nb) {
      const int64_t o = static_cast<int64_t>(key) * E + nb * 8 + 2 * t;
      *reinterpret_cast<uint32_t*>(dkg + o) = pack2<T>(dk[4 * nb + 2 * r] * a.scale, dk[4 * nb + 2 * r + 1] * a.scale);
      *reinterpret_cast<uint32_t*>(dvg + o) = pack2<T>(dv[4 * nb + 2 * r], dv[4 * nb + 2 * r + 1]);
    }
  }
}

// q (B, H, L, E), k/v (B, Hkv, S, E), dout (B, H, L, E) through the maps; lse, delta (B, H, L)
//   -> dk, dv (B, Hkv, S, E) and dq_accum (B, H, L, E) float32 += scale * dS K.
// Grid: one CTA per (key block, batch, kv head), key blocks fastest (CTAs of one head adjacent,
// and under causal the longest, lowest key blocks first). 384 threads.
template <typename T, int E, bool CAUSAL>
__global__ void __launch_bounds__(kThreads, 1)
    bwdwg_kernel(const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tk,
                 const __grid_constant__ CUtensorMap tv, const __grid_constant__ CUtensorMap tdo, const Args a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = Cfg<E>;
  extern __shared__ unsigned char smem_raw[];
  typename C::Smem& s =
      *reinterpret_cast<typename C::Smem*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));

  const int kb = static_cast<int>(blockIdx.x % a.n_kblocks);
  const int bhk = static_cast<int>(blockIdx.x / a.n_kblocks);
  const int b = bhk / a.Hkv, hk = bhk % a.Hkv;
  const int n0 = kb * kBlockN;
  const Work w = work_of<CAUSAL>(a, n0);

  if (threadIdx.x == 0) {
    ptx::mbar_init(&s.kv_full, 1);
    for (int i = 0; i < kStages; ++i) {
      ptx::mbar_init(&s.full[i], 1 + 32);
      ptx::mbar_init(&s.empty[i], 128 * kConsumerWarpgroups);
    }
    ptx::fence_mbarrier_init();
  }
  __syncthreads();

  const int wg = ptx::warpgroup_index();
  if (wg == 0) {
    ptx::setmaxnreg_dec<kProducerRegs>();
    if (threadIdx.x < 32 && w.n_items > 0) produce<C>(&tq, &tk, &tv, &tdo, s, a, w, b, hk, n0);
  } else {
    ptx::setmaxnreg_inc<kConsumerRegs>();
    consume<T, C, CAUSAL>(s, a, w, b, hk, n0, wg - 1);
  }
#else
  __trap();  // built without sm_90a: the host never launches this
#endif
}

}  // namespace flash_attn_ext::cuda::bwdwg
