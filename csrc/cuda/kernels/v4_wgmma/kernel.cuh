// v4_wgmma forward (sm_90a): FlashAttention with Hopper's asynchronous units.
//
// What changes from v3 (mma.sync + ldmatrix + cp.async, every warp loading and computing):
// - warp specialisation: warpgroup 0 only moves data, one thread issuing TMA box copies of
//   Q once and of K, V per kBlockN keys into a 2-stage ring; each stage has a "full" mbarrier
//   per operand (completed by the TMA's byte count) and an "empty" one per operand the
//   consumer warps arrive on when their wgmmas have read it;
// - setmaxnreg moves registers from the producer to the consumer warpgroups;
// - S = Q K^T is one wgmma chain with both operands in swizzled shared memory (SS); P stays in
//   registers as the A operand of the RS wgmma O += P V, with V read MN-major (no transpose
//   pass). No ldmatrix, no shared-memory staging of P.
// Rows are independent, so out-of-range Q rows (zero-filled by TMA) are computed and not
// stored; keys past the last visible one are zero-filled by TMA and masked to -inf.
//
// What each later change bought (H200, bf16, N = 16k, TFLOP/s, variants side by side in one
// run, benchmarks/NOTES_v4.md step 3, "run 2"; there the unpipelined loop on 128 x 128 tiles
// ran 543 at E = 128 and 395 at E = 64, cuDNN 612 and 455):
// - K and V stages released separately, K as soon as its QK^T retires: with one release per
//   stage the overlapped loop waited a full TMA round trip for K_{j+1} every step, and lost to
//   the unpipelined loop (run 1: 448 vs 526). After it, overlapped + pingpong: 571 at E = 128,
//   399 at E = 64.
// - wgmma.wait_group 0 pinned below the softmax (end_block): ptxas had hoisted it above every
//   exp2, so the "overlap" never overlapped; not measured alone after the K fix (both came
//   together in the run that measured it).
// - pingpong between the consumer warpgroups: +0.2% on the 128 x 128 tile at E = 128 (571 vs
//   570), +10% on 128 x 176 (590 vs 536) and at E = 64 (399 vs 363); while K came late it
//   cost 1-10%.
// - wider tiles (Cfg): 128 x 176 for E = 128, 590 (0.96x cuDNN; causal 562, 1.00x);
//   192 x 128 with three consumer warpgroups for E = 64, 464 (1.02x cuDNN; causal 419).
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "../../ptx/fence.cuh"
#include "../../ptx/mbarrier.cuh"
#include "../../ptx/named_barrier.cuh"
#include "../../ptx/setmaxnreg.cuh"
#include "../../ptx/tma.cuh"
#include "../../ptx/wgmma.cuh"
#include "config.h"
#include "softmax.cuh"

namespace flash_attn_ext::cuda::v4 {

// Leading offset of the MN-major V descriptor: bytes between the 64-wide E chunks of a V
// tile (see ptx/wgmma.cuh). Checked by scripts/ptx_tests/wgmma_tma_gemm.cu, mode 3.
template <class C>
constexpr uint32_t kVLeadBytes = C::kBlockN * 128;
constexpr uint32_t kVStrideBytes = 1024;

template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (std::is_same<T, __nv_bfloat16>::value) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  } else {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
}

// Number of kBlockN key tiles the CTA whose first row is row0 must visit.
template <class C, bool CAUSAL>
__device__ __forceinline__ int key_tiles(const Args& a, int row0) {
  int end = a.S;
  if constexpr (CAUSAL) {
    const int last_row = min(row0 + C::kBlockM, a.L) - 1;
    end = min(end, last_row + a.causal_offset + 1);
  }
  return end <= 0 ? 0 : (end + C::kBlockN - 1) / C::kBlockN;
}

template <class C>
__device__ __forceinline__ void produce(const CUtensorMap* tq, const CUtensorMap* tk, const CUtensorMap* tv,
                                        typename C::Smem& s, int row0, int h, int hk, int b, int n_tiles) {
  constexpr int E = C::E, kBlockM = C::kBlockM, kBlockN = C::kBlockN;
  ptx::tma_prefetch_desc(tq);
  ptx::tma_prefetch_desc(tk);
  ptx::tma_prefetch_desc(tv);
  ptx::mbar_arrive_expect_tx(&s.q_full, kBlockM * E * 2);
#pragma unroll
  for (int c = 0; c < E / kChunk; ++c)
    ptx::tma_load_4d(ptx::smem_addr(s.q) + c * kBlockM * 128, tq, ptx::smem_addr(&s.q_full), c * kChunk, row0, h, b);
  for (int j = 0; j < n_tiles; ++j) {
    const int st = j % kStages;
    // Reuse a stage only after every consumer warp released its previous tile. K and V are
    // released separately: K as soon as S = QK^T is done, which in the overlapped loop is a
    // whole step before PV frees V (with one release per stage, K_{j+1} was requested only
    // when PV_{j-1} ended and the next step waited for it with nothing in between).
    const uint32_t prev = ((j / kStages) - 1) & 1;
    if (j >= kStages) ptx::mbar_wait(&s.k_empty[st], prev);
    ptx::mbar_arrive_expect_tx(&s.k_full[st], kBlockN * E * 2);
#pragma unroll
    for (int c = 0; c < E / kChunk; ++c)
      ptx::tma_load_4d(ptx::smem_addr(s.k[st]) + c * kBlockN * 128, tk, ptx::smem_addr(&s.k_full[st]), c * kChunk,
                       j * kBlockN, hk, b);
    if (j >= kStages) ptx::mbar_wait(&s.v_empty[st], prev);
    ptx::mbar_arrive_expect_tx(&s.v_full[st], kBlockN * E * 2);
#pragma unroll
    for (int c = 0; c < E / kChunk; ++c)
      ptx::tma_load_4d(ptx::smem_addr(s.v[st]) + c * kBlockN * 128, tv, ptx::smem_addr(&s.v_full[st]), c * kChunk,
                       j * kBlockN, hk, b);
  }
}

// S = Q K^T for this warpgroup's 64 rows and one K stage, issued (not waited for).
template <typename T, class C>
__device__ __forceinline__ void issue_qk(float (&sc)[C::kBlockN / 2], uint32_t q_base, uint32_t k_base) {
  constexpr int E = C::E, kBlockM = C::kBlockM, kBlockN = C::kBlockN;
#pragma unroll
  for (int kk = 0; kk < E / 16; ++kk) {
    const uint32_t off = (kk % 4) * 32;  // k16 step inside a 128-byte swizzled row
    const uint64_t dq = ptx::desc_kmajor_sw128(q_base + (kk / 4) * kBlockM * 128 + off);
    const uint64_t dk = ptx::desc_kmajor_sw128(k_base + (kk / 4) * kBlockN * 128 + off);
    ptx::wgmma_ss<T, kBlockN, 0>(sc, dq, dk, kk > 0);
  }
  ptx::wgmma_commit();
}

// O += P V for one V stage (V read MN-major), issued (not waited for).
template <typename T, class C>
__device__ __forceinline__ void issue_pv(float (&o)[C::E / 2], const uint32_t (&p)[C::kBlockN / 16][4],
                                         uint32_t v_base) {
#pragma unroll
  for (int kk = 0; kk < C::kBlockN / 16; ++kk) {
    const uint64_t dv = ptx::make_desc_sw128(v_base + kk * 16 * 128, kVLeadBytes<C>, kVStrideBytes);
    ptx::wgmma_rs<T, C::E, 1>(o, p[kk], dv, 1);
  }
  ptx::wgmma_commit();
}

// Scale, mask (only tiles that need it: the key tail, or causal tiles crossing the diagonal of
// this warpgroup's first row) and run one online-softmax step on key tile j.
template <class C, bool CAUSAL>
__device__ __forceinline__ void softmax_tile(float (&sc)[C::kBlockN / 2], const Args& a, int j, int first_row,
                                             int row_g, int t, float (&m)[2], float (&l)[2], float (&alpha)[2]) {
  constexpr int kBlockN = C::kBlockN;
  const int key0 = j * kBlockN;
  const bool tail = key0 + kBlockN > a.S;
  const bool diag = CAUSAL && key0 + kBlockN - 1 > first_row + a.causal_offset;
  if (tail || diag)
    scale_and_mask<kBlockN, true, CAUSAL>(sc, a.scale_log2, row_g, key0, t, a.S, a.causal_offset);
  else
    scale_and_mask<kBlockN, false, CAUSAL>(sc, a.scale_log2, row_g, key0, t, a.S, a.causal_offset);
  online_softmax<kBlockN>(sc, m, l, alpha);
}

// ptxas schedules wgmma.wait_group as early as its basic block allows: in the overlapped loop
// it hoisted the wait for PV_j above the whole softmax of S_{j+1} (SASS: WARPGROUP.DEPBAR.LE
// gsb0, 0x0 right after the first row-max FMNMX, no MUFU.EX2 between the two waits), so the
// exp2s never ran under PV. A branch that ptxas cannot fold ends the block and pins the wait
// below it; `never` is false at run time but unknown at compile time.
__device__ __forceinline__ void end_block(bool never) {
  if (never) asm volatile("nanosleep.u32 1;\n");
}

// Key tiles [0, n) need no mask for the 64 rows from first_row on: the key tail lies beyond
// them and (causal) so does every row's diagonal.
template <class C, bool CAUSAL>
__device__ __forceinline__ int plain_tiles(const Args& a, int first_row, int n_tiles) {
  constexpr int kBlockN = C::kBlockN;
  int n = a.S / kBlockN;
  if constexpr (CAUSAL) {
    const int visible = first_row + a.causal_offset + 1;  // keys [0, visible) are seen by every row
    n = min(n, visible > 0 ? visible / kBlockN : 0);
  }
  return min(n, n_tiles);
}

// P as RS A fragments: k16 step kk covers accumulator blocks 2kk and 2kk + 1, whose
// (row g, row g+8) x (cols 2t, 2t+1, 2t+8, 2t+9) are exactly the m64k16 A layout.
template <typename T, int N>
__device__ __forceinline__ void pack_p(const float (&sc)[N / 2], uint32_t (&p)[N / 16][4]) {
#pragma unroll
  for (int kk = 0; kk < N / 16; ++kk) {
    p[kk][0] = pack2<T>(sc[8 * kk + 0], sc[8 * kk + 1]);
    p[kk][1] = pack2<T>(sc[8 * kk + 2], sc[8 * kk + 3]);
    p[kk][2] = pack2<T>(sc[8 * kk + 4], sc[8 * kk + 5]);
    p[kk][3] = pack2<T>(sc[8 * kk + 6], sc[8 * kk + 7]);
  }
}

// Pingpong between the consumer warpgroups (PINGPONG = true): each batch of wgmmas is a turn,
// and the W warpgroups take turns round robin, WG 0 first. Named barrier 1 + c opens warpgroup
// c's turn; it completes when c waits on it (128 threads) and the previous warpgroup has
// passed it the turn (128 arrivals), so one warpgroup's softmax runs while the tensor cores
// work on another's batch instead of all asking for the tensor cores at once and all waiting
// for exp2 at once. Every warpgroup of a CTA takes the same number of turns (they visit the
// same key tiles), so the arrivals balance: WG W-1 opens WG 0's first turn, and does not pass
// on its last one.
template <bool ON, int W>
struct Turns {
  int cw;
  __device__ __forceinline__ void open_first(int n_tiles) const {
    if (ON && cw == W - 1 && n_tiles > 0) ptx::named_bar_arrive(1, 256);
  }
  __device__ __forceinline__ void wait() const {
    if (ON) ptx::named_bar_sync(1 + cw, 256);
  }
  __device__ __forceinline__ void pass(bool last) const {
    if (ON && !(cw == W - 1 && last)) ptx::named_bar_arrive(1 + (cw + 1) % W, 256);
  }
};

// One consumer warpgroup: 64 query rows starting at row0 + 64 * cw.
// OVERLAP = false: per tile, S = QK^T, wait, softmax, O += PV, wait (each unit idles while
// the other works, except across the two consumer warpgroups).
// OVERLAP = true (FlashAttention-3's intra-warpgroup pipelining): S for tile j + 1 is issued
// together with PV for tile j, and its softmax runs while PV is still on the tensor cores.
// Inside that window the softmax has no branch (mask or not is chosen per step, around the
// whole batch: plain tiles first, masked ones (key tail, diagonal) after), and end_block()
// keeps ptxas from hoisting wgmma.wait_group 0 above it.
template <typename T, class C, bool CAUSAL, bool OVERLAP, bool PINGPONG>
__device__ __forceinline__ void consume(const Args& a, typename C::Smem& s, int row0, int cw, int h, int b,
                                        int n_tiles) {
  constexpr int E = C::E, kBlockN = C::kBlockN;
  const int tid = threadIdx.x % 128, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int row_g = row0 + cw * 64 + warp * 16 + g;  // this thread's rows: row_g and row_g + 8
  const int first_row = row0 + cw * 64;
  const Turns<PINGPONG, C::kConsumerWarpgroups> turns{cw};

  float o[E / 2];
#pragma unroll
  for (int i = 0; i < E / 2; ++i) o[i] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, alpha[2];
  float sc[kBlockN / 2];
  uint32_t p[kBlockN / 16][4];

  turns.open_first(n_tiles);
  if (n_tiles > 0) ptx::mbar_wait(&s.q_full, 0);
  const uint32_t q_base = ptx::smem_addr(s.q) + cw * 64 * 128;
  auto k_base = [&](int j) { return ptx::smem_addr(s.k[j % kStages]); };
  auto v_base = [&](int j) { return ptx::smem_addr(s.v[j % kStages]); };
  auto phase = [](int j) { return static_cast<uint32_t>((j / kStages) & 1); };

  if constexpr (!OVERLAP) {
    for (int j = 0; j < n_tiles; ++j) {
      ptx::mbar_wait(&s.k_full[j % kStages], phase(j));
      turns.wait();
      ptx::wgmma_fence();
      issue_qk<T, C>(sc, q_base, k_base(j));
      turns.pass(false);
      ptx::wgmma_wait<0>();
      ptx::fence_operands(sc);
      if (lane == 0) ptx::mbar_arrive(&s.k_empty[j % kStages]);
      softmax_tile<C, CAUSAL>(sc, a, j, first_row, row_g, t, m, l, alpha);
      rescale<E>(o, alpha);
      pack_p<T, kBlockN>(sc, p);
      ptx::mbar_wait(&s.v_full[j % kStages], phase(j));
      turns.wait();
      ptx::wgmma_fence();
      issue_pv<T, C>(o, p, v_base(j));
      turns.pass(j + 1 == n_tiles);
      ptx::wgmma_wait<0>();
      ptx::fence_operands(o);
      if (lane == 0) ptx::mbar_arrive(&s.v_empty[j % kStages]);
    }
  } else if (n_tiles > 0) {
    const int n_plain = plain_tiles<C, CAUSAL>(a, first_row, n_tiles);
    ptx::mbar_wait(&s.k_full[0], 0);
    turns.wait();
    ptx::wgmma_fence();
    issue_qk<T, C>(sc, q_base, k_base(0));
    turns.pass(false);  // the last turn is always the final PV below
    ptx::wgmma_wait<0>();
    ptx::fence_operands(sc);
    if (lane == 0) ptx::mbar_arrive(&s.k_empty[0]);
    softmax_tile<C, CAUSAL>(sc, a, 0, first_row, row_g, t, m, l, alpha);  // O is 0: no rescale
    pack_p<T, kBlockN>(sc, p);

    // Overlapped step j (0 <= j < n - 1): PV_j, and S_{j+1} with its softmax.
    auto step = [&](auto mask_tag, int j) {
      constexpr bool kMask = decltype(mask_tag)::value;
      ptx::mbar_wait(&s.k_full[(j + 1) % kStages], phase(j + 1));
      ptx::mbar_wait(&s.v_full[j % kStages], phase(j));
      turns.wait();
      ptx::wgmma_fence();
      issue_qk<T, C>(sc, q_base, k_base(j + 1));
      rescale<E>(o, alpha);
      ptx::wgmma_fence();
      issue_pv<T, C>(o, p, v_base(j));
      turns.pass(false);
      ptx::wgmma_wait<1>();  // groups retire in order: S_{j+1} is done, PV_j may still run
      ptx::fence_operands(sc);
      if (lane == 0) ptx::mbar_arrive(&s.k_empty[(j + 1) % kStages]);
      scale_and_mask<kBlockN, kMask, CAUSAL>(sc, a.scale_log2, row_g, (j + 1) * kBlockN, t, a.S, a.causal_offset);
      online_softmax<kBlockN>(sc, m, l, alpha);
      end_block(a.L < 0);  // keeps wait_group 0 below the softmax
      ptx::wgmma_wait<0>();
      ptx::fence_operands(o);
      if (lane == 0) ptx::mbar_arrive(&s.v_empty[j % kStages]);
      pack_p<T, kBlockN>(sc, p);
    };
    for (int j = 0; j + 1 < n_tiles; ++j) {
      if (j + 1 < n_plain)
        step(std::false_type{}, j);
      else
        step(std::true_type{}, j);
    }
    const int j = n_tiles - 1;  // the last tile only runs PV
    ptx::mbar_wait(&s.v_full[j % kStages], phase(j));
    turns.wait();
    rescale<E>(o, alpha);
    ptx::wgmma_fence();
    issue_pv<T, C>(o, p, v_base(j));
    turns.pass(true);
    ptx::wgmma_wait<0>();
    ptx::fence_operands(o);
    if (lane == 0) ptx::mbar_arrive(&s.v_empty[j % kStages]);
  }

  // Finalise: full row sums, O / l, LSE = ln 2 * (m + log2 l); empty rows give 0 and -inf.
  float inv[2], lse[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float sum = quad_sum(l[r]);
    inv[r] = sum > 0.f ? 1.f / sum : 0.f;
    lse[r] = sum > 0.f ? (m[r] + __log2f(sum)) * 0.69314718055994531f : -INFINITY;
  }
  T* out = static_cast<T*>(a.out) + b * a.o_sb + h * a.o_sh;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row_g + 8 * r;
    if (row >= a.L) continue;
    T* orow = out + static_cast<int64_t>(row) * a.o_sl;
#pragma unroll
    for (int jb = 0; jb < E / 8; ++jb)
      *reinterpret_cast<uint32_t*>(orow + 8 * jb + 2 * t) =
          pack2<T>(o[4 * jb + 2 * r] * inv[r], o[4 * jb + 2 * r + 1] * inv[r]);
    if (a.lse != nullptr && t == 0) a.lse[(static_cast<int64_t>(b) * a.H + h) * a.L + row] = lse[r];
  }
}

template <typename T, class C, bool CAUSAL, bool OVERLAP, bool PINGPONG>
__global__ void __launch_bounds__(C::kThreads, 1)
    v4_fwd_kernel(const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tk,
                  const __grid_constant__ CUtensorMap tv, const Args a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ unsigned char smem_raw[];
  using Smem = typename C::Smem;
  Smem& s = *reinterpret_cast<Smem*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));

  // Tiles of one head are adjacent in launch order so they share K/V in L2; under causal the
  // longest rows (last query tiles) start first.
  const int bh = blockIdx.x / a.num_m;
  int m_blk = blockIdx.x % a.num_m;
  if constexpr (CAUSAL) m_blk = a.num_m - 1 - m_blk;
  const int b = bh / a.H, h = bh % a.H, hk = h / a.group;
  const int row0 = m_blk * C::kBlockM;
  const int n_tiles = key_tiles<C, CAUSAL>(a, row0);

  if (threadIdx.x == 0) {
    ptx::mbar_init(&s.q_full, 1);
    for (int i = 0; i < kStages; ++i) {
      ptx::mbar_init(&s.k_full[i], 1);
      ptx::mbar_init(&s.v_full[i], 1);
      ptx::mbar_init(&s.k_empty[i], 4 * C::kConsumerWarpgroups);
      ptx::mbar_init(&s.v_empty[i], 4 * C::kConsumerWarpgroups);
    }
    ptx::fence_mbarrier_init();
  }
  __syncthreads();

  const int wg = threadIdx.x / 128;
  if (wg == 0) {
    ptx::setmaxnreg_dec<C::kProducerRegs>();
    if (threadIdx.x == 0 && n_tiles > 0) produce<C>(&tq, &tk, &tv, s, row0, h, hk, b, n_tiles);
  } else {
    ptx::setmaxnreg_inc<C::kConsumerRegs>();
    consume<T, C, CAUSAL, OVERLAP, PINGPONG>(a, s, row0, wg - 1, h, b, n_tiles);
  }
#else
  __trap();  // built without sm_90a: the host never launches this
#endif
}

}  // namespace flash_attn_ext::cuda::v4
