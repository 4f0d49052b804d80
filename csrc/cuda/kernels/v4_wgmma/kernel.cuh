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
// - v4_fwd_persistent_kernel (below): one CTA per SM looping over work items, Q buffers that
//   load the next item's Q early, O staged in shared memory and written by a TMA store (E <=
//   128); for short sequences, where each CTA of the one-item grid sees ~8 key tiles and its
//   first loads and last stores are exposed. NOTES_v4.md steps 4-15 and launch_template.cuh
//   have what it and the later steps (causal order, E = 256, two CTAs per SM) bought.
// - the last key tile's P V over only the keys its block sees (with_tail_width; E = 256's
//   80-key tiles): +2-5% at N = 512 (NOTES_v4.md step 16).
// - the register epilogue's stores as whole 32-byte sectors (store_o_regs): E = 256 +18% at
//   N = 512, +7-15% at N = 1024 (step 17).
// - wgmma descriptors advanced by one add per k-step (tile_desc): +2-6% at E = 128 and 256 and at
//   E = 64 causal (step 18).
// - a 128 x 112 tile for head dims 129..192, which ran on E = 256's: +14-28% at E = 192, +15-34% at
//   E = 160 (step 20).
// - the warpgroup index read as a warp-uniform value (ptx::warpgroup_index), so Q's descriptors live in
//   uniform registers: 105 fewer instructions per two 176-key tiles, +1-4% (step 21).
// - after a row's first tile, the softmax against the running max without the tile's max, with a
//   warpgroup vote and the tile computed again when a score passes it by 2^15 (softmax_after_qk): E = 128
//   +3-12% (N = 16k 675 vs 640 TFLOP/s), E = 64 causal +2-5% (step 22).
// - each consumer warpgroup runs only the key tiles its own rows need and passes over the rest (own_keys_end,
//   pass_over_tiles): causal E = 64 +1-8% (N = 512 282 vs 267), E = 256 +1-4% (step 23); with it, causal E = 256
//   at S <= 1024 on 64-key tiles (launch_template.cuh): +2-5% (step 24).
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "../causal_order.h"
#include "../common.cuh"
#include "../../ptx/fence.cuh"
#include "../../ptx/mbarrier.cuh"
#include "../../ptx/named_barrier.cuh"
#include "../../ptx/setmaxnreg.cuh"
#include "../../ptx/shared.cuh"
#include "../../ptx/tma.cuh"
#include "../../ptx/wgmma.cuh"
#include "config.h"
#include "softmax.cuh"

namespace flash_attn_ext::cuda::v4 {

// The dynamic shared memory as layout S, its start rounded up to 1024 bytes (the 128-byte swizzle's
// atom; every launch requests sizeof(S) + 1024).
template <class S>
__device__ __forceinline__ S& smem_layout() {
  extern __shared__ unsigned char smem_raw[];
  return *reinterpret_cast<S*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
}

// Leading offset of the MN-major V descriptor: bytes between the 64-wide E chunks of a V
// tile (see ptx/wgmma.cuh). Checked by scripts/ptx_tests/wgmma_tma_gemm.cu, mode 3.
template <class C>
constexpr uint32_t kVLeadBytes = C::kBlockN * 128;
constexpr uint32_t kVStrideBytes = 1024;

// One past the last key any row of the CTA whose first row is row0 sees (<= 0: none).
template <class C, bool CAUSAL>
__device__ __forceinline__ int keys_end(const Args& a, int row0) {
  int end = a.S;
  if constexpr (CAUSAL) {
    const int last_row = min(row0 + C::kBlockM, a.L) - 1;
    end = min(end, last_row + a.causal_offset + 1);
  }
  return end;
}

// Number of kBlockN key tiles that hold keys [0, end) (0 when end <= 0).
template <class C>
__device__ __forceinline__ int tiles_to(int end) {
  return end <= 0 ? 0 : (end + C::kBlockN - 1) / C::kBlockN;
}

// Number of kBlockN key tiles the CTA whose first row is row0 must visit.
template <class C, bool CAUSAL>
__device__ __forceinline__ int key_tiles(const Args& a, int row0) {
  return tiles_to<C>(keys_end<C, CAUSAL>(a, row0));
}

// One past the last key the 64 rows from first_row on need, within their CTA's (row0's) keys (a.own_tiles;
// 0: the block's end for every warpgroup, the A/B baseline): none for rows past L (the last query block's
// padding: at N = 512 the third warpgroup of E = 64's 192-row block), and under causal a warpgroup other
// than the block's last ends 64 keys or more before the block does.
template <class C, bool CAUSAL>
__device__ __forceinline__ int own_keys_end(const Args& a, int row0, int first_row) {
  const int end = keys_end<C, CAUSAL>(a, row0);
  if (!a.own_tiles) return end;
  if (first_row >= a.L) return 0;
  return CAUSAL ? min(end, first_row + 64 + a.causal_offset) : end;
}

// Values of C's element type per 128-byte swizzled row: 64 16-bit values or 32 floats.
template <class C>
constexpr int kRowVals = 128 / static_cast<int>(sizeof(typename C::Elem));

// Q of one CTA's kBlockM rows into the buffer at dst, completing `bar`.
template <class C>
__device__ __forceinline__ void load_q(const CUtensorMap* tq, uint32_t dst, uint64_t* bar, int row0, int h, int b) {
  constexpr int E = C::E, kBlockM = C::kBlockM, kVals = kRowVals<C>;
  ptx::mbar_arrive_expect_tx(bar, kBlockM * E * sizeof(typename C::Elem));
#pragma unroll
  for (int c = 0; c < E / kVals; ++c)
    ptx::tma_load_4d(dst + c * kBlockM * 128, tq, ptx::smem_addr(bar), c * kVals, row0, h, b);
}

// Key tile j of one (b, kv head) into stage `st` of a ring (K's or V's), completing full[st] with
// the TMA's bytes. The caller has waited until every consumer warp released the stage.
template <class C, class Elem, int N>
__device__ __forceinline__ void load_ring_tile(const CUtensorMap* map, Elem (&ring)[N][C::kBlockN * C::E],
                                               uint64_t (&full)[N], int st, int j, int hk, int b) {
  constexpr int E = C::E, kBlockN = C::kBlockN, kVals = kRowVals<C>;
  ptx::mbar_arrive_expect_tx(&full[st], kBlockN * E * sizeof(Elem));
#pragma unroll
  for (int c = 0; c < E / kVals; ++c)
    ptx::tma_load_4d(ptx::smem_addr(ring[st]) + c * kBlockN * 128, map, ptx::smem_addr(&full[st]), c * kVals,
                     j * kBlockN, hk, b);
}

// K and V tiles 0 .. n_tiles - 1 of one (b, kv head) through the ring. g0 counts the tiles
// this CTA has already sent through the ring (always 0 for the one-item kernel): stage and
// phase follow g0 + j, so the persistent kernel's barriers keep flipping across work items.
template <class C, class S>
__device__ __forceinline__ void produce_kv(const CUtensorMap* tk, const CUtensorMap* tv, S& s, int hk, int b,
                                           int n_tiles, uint32_t g0) {
  for (int j = 0; j < n_tiles; ++j) {
    const uint32_t g = g0 + j;
    const int st = g % kStages;
    // Reuse a stage only after every consumer warp released its previous tile. K and V are
    // released separately: K as soon as S = QK^T is done, which in the overlapped loop is a
    // whole step before PV frees V (with one release per stage, K_{j+1} was requested only
    // when PV_{j-1} ended and the next step waited for it with nothing in between).
    const uint32_t prev = ((g / kStages) - 1) & 1;
    if (g >= kStages) ptx::mbar_wait(&s.k_empty[st], prev);
    load_ring_tile<C>(tk, s.k, s.k_full, st, j, hk, b);
    if (g >= kStages) ptx::mbar_wait(&s.v_empty[st], prev);
    load_ring_tile<C>(tv, s.v, s.v_full, st, j, hk, b);
  }
}

template <class C>
__device__ __forceinline__ void produce(const CUtensorMap* tq, const CUtensorMap* tk, const CUtensorMap* tv,
                                        typename C::Smem& s, int row0, int h, int hk, int b, int n_tiles) {
  ptx::tma_prefetch_desc(tq);
  ptx::tma_prefetch_desc(tk);
  ptx::tma_prefetch_desc(tv);
  load_q<C>(tq, ptx::smem_addr(s.q), &s.q_full, row0, h, b);
  produce_kv<C>(tk, tv, s, hk, b, n_tiles, 0);
}

// Values per wgmma k-step: 16 for 16-bit operands, 8 for float (TF32). Either way one step is 32
// bytes, a quarter of a 128-byte swizzled row, so descriptors advance alike for both.
template <typename T>
constexpr int kStepK = std::is_same<T, float>::value ? 8 : 16;

// The descriptor of the tile at `base`, `bytes` into it: ADVANCE adds the offset to the tile's descriptor
// (ptx::desc_advance: one add per k-step); otherwise it is built again from the address (five or so
// instructions). Advancing measured +2-6% at E = 128 and 256 and under causal at E = 64, and -1-4% in the
// persistent E = 64 kernel (three consumer warpgroups), whose schedule ptxas changed with it: its softmax
// moved from after PV's wait to under PV (session 10, device calls 4-6). That kernel builds them again.
template <bool ADVANCE>
__device__ __forceinline__ uint64_t tile_desc(uint64_t desc0, uint32_t base, uint32_t bytes, uint32_t lead = 16,
                                              uint32_t stride = 1024) {
  return ADVANCE ? ptx::desc_advance(desc0, bytes) : ptx::make_desc_sw128(base + bytes, lead, stride);
}

// S = Q K^T for this warpgroup's 64 rows and one K stage, issued (not waited for).
template <typename T, class C, bool ADVANCE = true>
__device__ __forceinline__ void issue_qk(float (&sc)[C::kBlockN / 2], uint32_t q_base, uint32_t k_base) {
  constexpr int E = C::E, kBlockM = C::kBlockM, kBlockN = C::kBlockN;
  const uint64_t dq0 = ptx::desc_kmajor_sw128(q_base), dk0 = ptx::desc_kmajor_sw128(k_base);
#pragma unroll
  for (int kk = 0; kk < E / kStepK<T>; ++kk) {
    const uint32_t off = (kk % 4) * 32;  // k-step inside a 128-byte swizzled row
    const uint64_t dq = tile_desc<ADVANCE>(dq0, q_base, (kk / 4) * kBlockM * 128 + off);
    const uint64_t dk = tile_desc<ADVANCE>(dk0, k_base, (kk / 4) * kBlockN * 128 + off);
    ptx::wgmma_ss<T, kBlockN, 0>(sc, dq, dk, kk > 0);
  }
  ptx::wgmma_commit();
}

// O += P V for one V stage, issued (not waited for); W < kBlockN: over its first W keys only (a
// narrow last tile, with_tail_width below). 16-bit: V as TMA stored it, read MN-major.
// float: TF32 operands must be K-major, so the stage holds V^T (kernel_f32.cuh's producer writes
// it: rows of 32 keys per 128-byte swizzled row, E rows per chunk), read like a K tile.
template <typename T, class C, int W = C::kBlockN, bool ADVANCE = true>
__device__ __forceinline__ void issue_pv(float (&o)[C::E / 2], const uint32_t (&p)[C::kBlockN / kStepK<T>][4],
                                         uint32_t v_base) {
  static_assert(W % kStepK<T> == 0 && W <= C::kBlockN, "v4: a narrow tile is whole k-steps");
  constexpr bool kFloat = std::is_same<T, float>::value;
  const uint64_t dv0 =
      kFloat ? ptx::desc_kmajor_sw128(v_base) : ptx::make_desc_sw128(v_base, kVLeadBytes<C>, kVStrideBytes);
#pragma unroll
  for (int kk = 0; kk < W / kStepK<T>; ++kk) {
    if constexpr (kFloat) {
      ptx::wgmma_rs<T, C::E, 0>(o, p[kk], tile_desc<ADVANCE>(dv0, v_base, (kk / 4) * C::E * 128 + (kk % 4) * 32), 1);
    } else {
      const uint64_t dv = tile_desc<ADVANCE>(dv0, v_base, kk * 16 * 128, kVLeadBytes<C>, kVStrideBytes);
      ptx::wgmma_rs<T, C::E, 1>(o, p[kk], dv, 1);
    }
  }
  ptx::wgmma_commit();
}

// O times alpha. C::kLazyRescale: a warp whose rows all kept their max (alpha exactly 1,
// softmax.cuh) skips it; the vote costs one instruction, the rescale E / 2.
template <class C>
__device__ __forceinline__ void rescale_o(float (&o)[C::E / 2], const float (&alpha)[2]) {
  if constexpr (C::kLazyRescale) {
    if (!__any_sync(0xffffffffu, alpha[0] != 1.f || alpha[1] != 1.f)) return;
  }
  rescale<C::E>(o, alpha);
}

// The online-softmax step as tile shape C runs it (eager or lazy running max).
template <class C>
__device__ __forceinline__ void softmax_step(float (&sc)[C::kBlockN / 2], float (&m)[2], float (&l)[2],
                                             float (&alpha)[2], float c) {
  online_softmax<C::kBlockN, C::kLazyRescale, C::kExactRescale>(sc, m, l, alpha, c);
}

// Key tile j holds keys past S, or (causal) keys past the diagonal of some row from first_row on.
template <class C, bool CAUSAL>
__device__ __forceinline__ bool tile_needs_mask(const Args& a, int j, int first_row) {
  const int key0 = j * C::kBlockN;
  return key0 + C::kBlockN > a.S || (CAUSAL && key0 + C::kBlockN - 1 > first_row + a.causal_offset);
}

// Mask (only tiles that need it: the key tail, or causal tiles crossing the diagonal of this
// warpgroup's first row) and run one online-softmax step on key tile j.
// SCALED: sc holds the scores over f (online_softmax's SCALED).
template <class C, bool CAUSAL, bool SCALED = false>
__device__ __forceinline__ void softmax_tile(float (&sc)[C::kBlockN / 2], const Args& a, int j, int first_row,
                                             int row_g, int t, float (&m)[2], float (&l)[2], float (&alpha)[2],
                                             float f = 1.f) {
  constexpr int kBlockN = C::kBlockN;
  if (tile_needs_mask<C, CAUSAL>(a, j, first_row))
    hide_scores<kBlockN, CAUSAL>(sc, row_g, j * kBlockN, t, a.S, a.causal_offset);
  if constexpr (SCALED)
    online_softmax<kBlockN, C::kLazyRescale, C::kExactRescale, true>(sc, m, l, alpha, a.scale_log2, f);
  else
    softmax_step<C>(sc, m, l, alpha, a.scale_log2);
}

// ptxas schedules wgmma.wait_group as early as its basic block allows: in the overlapped loop
// it hoisted the wait for PV_j above the whole softmax of S_{j+1} (SASS: WARPGROUP.DEPBAR.LE
// gsb0, 0x0 right after the first row-max FMNMX, no MUFU.EX2 between the two waits), so the
// exp2s never ran under PV. A branch that ptxas cannot fold ends the block and pins the wait
// below it; `never` is false at run time but unknown at compile time.
__device__ __forceinline__ void end_block(bool never) {
  if (never) asm volatile("nanosleep.u32 1;\n");
}

// An item's last key tile often holds fewer visible keys than kBlockN (the key tail, or under causal
// the warpgroup's last row): calls f(std::integral_constant<int, W>) with the narrowest multiple W of
// STEP (C::kTailStep, or C::kCausalTailStep under causal) that covers `keys` (1 .. kBlockN), so that
// tile's P V skips the keys no row sees (their P is 0); kBlockN where STEP is 0. f is instantiated once
// per width; the branch is uniform across the warpgroup (keys is), and each f waits for its own wgmmas
// (in-flight wgmmas across the join made ptxas serialise them). Q K^T stays whole: a narrow Q K^T in its
// own accumulator got every wgmma of the kernel serialised (C7511, "insufficient register resources for
// the wgmma pipeline").
template <class C, int STEP, int W = STEP, class F>
__device__ __forceinline__ void with_tail_width(int keys, F&& f) {
  if constexpr (W <= 0 || W >= C::kBlockN) {
    f(std::integral_constant<int, C::kBlockN>{});
  } else {
    if (keys <= W) f(std::integral_constant<int, W>{});
    else with_tail_width<C, STEP, W + STEP>(keys, f);
  }
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

// float to TF32 rounded to nearest (ties away), in a float32 register with the low 13 bits zero.
__device__ __forceinline__ uint32_t to_tf32(float x) {
  uint32_t y;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(y) : "f"(x));
  return y;
}

// x as two TF32 values, hi + lo = x to about 2^-22 |x| (3xTF32, kernel_f32x3.cuh): hi = tf32(x), lo =
// tf32(x - hi); x - hi is exact in float32.
__device__ __forceinline__ void split_tf32(float x, uint32_t& hi, uint32_t& lo) {
  hi = to_tf32(x);
  lo = to_tf32(x - __uint_as_float(hi));
}

// The same for four values, as the float32-accurate kernel's 16-byte loads bring them.
__device__ __forceinline__ void split_tf32(const float4& x, uint32_t (&hi)[4], uint32_t (&lo)[4]) {
  split_tf32(x.x, hi[0], lo[0]);
  split_tf32(x.y, hi[1], lo[1]);
  split_tf32(x.z, hi[2], lo[2]);
  split_tf32(x.w, hi[3], lo[3]);
}

// P as RS A fragments.
// 16-bit: k16 step kk covers accumulator blocks 2kk and 2kk + 1, whose (row g, row g+8) x
// (cols 2t, 2t+1, 2t+8, 2t+9) are exactly the m64k16 A layout.
// float: k8 step kk is accumulator block kk, (rows g, g+8) x (cols 2t, 2t+1); the m64k8 TF32 A
// layout wants cols t and t + 4 instead. A k-step sums over its 8 columns in any order, so
// this thread's cols 2t and 2t+1 go into A columns t and t + 4 as they are, and the V^T stage
// holds key 2t in k-slot t and key 2t+1 in k-slot t + 4 (kernel_f32.cuh): no shuffles.
template <typename T, int N>
__device__ __forceinline__ void pack_p(const float (&sc)[N / 2], uint32_t (&p)[N / kStepK<T>][4]) {
  if constexpr (std::is_same<T, float>::value) {
#pragma unroll
    for (int kk = 0; kk < N / 8; ++kk) {
      p[kk][0] = to_tf32(sc[4 * kk + 0]);
      p[kk][1] = to_tf32(sc[4 * kk + 2]);
      p[kk][2] = to_tf32(sc[4 * kk + 1]);
      p[kk][3] = to_tf32(sc[4 * kk + 3]);
    }
  } else {
#pragma unroll
    for (int kk = 0; kk < N / 16; ++kk) {
      p[kk][0] = pack2<T>(sc[8 * kk + 0], sc[8 * kk + 1]);
      p[kk][1] = pack2<T>(sc[8 * kk + 2], sc[8 * kk + 3]);
      p[kk][2] = pack2<T>(sc[8 * kk + 4], sc[8 * kk + 5]);
      p[kk][3] = pack2<T>(sc[8 * kk + 6], sc[8 * kk + 7]);
    }
  }
}

// Pingpong between the consumer warpgroups (PINGPONG = true): each batch of wgmmas is a turn,
// and the W warpgroups take turns round robin, WG 0 first. Named barrier 1 + c opens warpgroup
// c's turn; it completes when c waits on it (128 threads) and the previous warpgroup has
// passed it the turn (128 arrivals), so one warpgroup's softmax runs while the tensor cores
// work on another's batch instead of all asking for the tensor cores at once and all waiting
// for exp2 at once. Every warpgroup of a CTA takes the same number of turns (they visit the
// same key tiles, running them or passing over them: pass_over_tiles), so the arrivals balance:
// WG W-1 opens WG 0's first turn, and does not pass on its last one.
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

// A copy of x that ptxas cannot see through, so what is computed from it stays where it is used.
__device__ __forceinline__ uint32_t opaque(uint32_t x) {
  asm volatile("mov.b32 %0, %0;\n" : "+r"(x));
  return x;
}

// Where one work item sits in the CTA's rings: the K/V ring has already carried g0 tiles
// (stage and phase of tile j follow g0 + j), Q is in the buffer at q_smem whose q_full phase
// to wait for is q_parity. q_empty (persistent kernel only, else 0) is where each consumer
// warp says it has finished reading that Q buffer (no barrier sits at shared address 0: the
// buffers come first). Barriers go by 32-bit shared address: one register each across the
// persistent loop instead of a 64-bit generic pointer.
struct Ring {
  uint32_t g0;
  uint32_t q_smem;
  uint32_t q_full;
  uint32_t q_parity;
  uint32_t q_empty;
};

// Named barriers: 1 .. 3 are the pingpong turns, 4 + cw the private ones of consumer warpgroup cw
// (Q's sign flip below, the persistent kernels' epilogue).
constexpr int kWarpgroupBarrier = 4;

// A negative scale runs as |scale| on -Q (softmax.cuh says why): once a Q tile has landed, each
// consumer warpgroup flips the sign bits of its own 64 rows (8 KB per 64-value chunk, any swizzle)
// and makes its stores visible to wgmma, which reads through the async proxy, before any thread
// of the warpgroup issues one.
template <class C>
__device__ __forceinline__ void negate_q_rows(uint32_t q_rows, int cw) {
  constexpr int kChunks = C::E / kRowVals<C>;
  constexpr uint32_t kSign = sizeof(typename C::Elem) == 4 ? 0x80000000u : 0x80008000u;
  const int tid = threadIdx.x % 128;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
#pragma unroll
    for (int i = 0; i < 64 * 128 / (16 * 128); ++i) {
      const uint32_t addr = q_rows + c * C::kBlockM * 128 + (i * 128 + tid) * 16;
      uint32_t x[4];
      ptx::ld_shared_v4(addr, x);
      for (uint32_t& v : x) v ^= kSign;
      ptx::st_shared_v4(addr, x);
    }
  }
  ptx::fence_proxy_async_smem();
  ptx::named_bar_sync(kWarpgroupBarrier + cw, 128);
}

// Key tiles [n_mine, n_tiles) of the block, which this warpgroup's rows do not need (own_keys_end): each
// tile's K and V stages released (release_tile, once they are full: an arrival before then would count
// toward the stage's previous tile), and the pingpong turns these tiles would have taken passed on (but the
// block's last warpgroup's very last one, as in the loops), so that the other warpgroups' barriers and turns
// balance as if this one had run them. The overlapped loop takes a turn per tile plus one (the first Q K^T),
// the unpipelined loop two per tile. With no tile of its own the warpgroup releases Q at once.
template <bool OVERLAP, class Tn, class ReleaseQ, class ReleaseTile>
__device__ __forceinline__ void pass_over_tiles(int n_mine, int n_tiles, const Tn& turns, ReleaseQ&& release_q,
                                                ReleaseTile&& release_tile) {
  int turns_left = OVERLAP ? n_tiles + 1 - (n_mine > 0 ? n_mine + 1 : 0) : 2 * (n_tiles - n_mine);
  auto empty_turn = [&] {
    turns.wait();
    turns.pass(--turns_left == 0);
  };
  if (n_mine == 0) {
    release_q();
    if (OVERLAP) empty_turn();
  }
  for (int j = n_mine; j < n_tiles; ++j) {
    for (int turn = 0; turn < (OVERLAP ? 1 : 2); ++turn) empty_turn();
    release_tile(j);
  }
}

// The softmax of key tile j once its Q K^T has retired, then release() (the K stage, and Q on an item's last
// tile), after the tile's mask where `masked`. SKIP (C::kSkipMax, a tile after a row's first): without the row
// max (softmax.cuh, exps_at_running_max). The consumer warpgroup votes on the result; if any thread's rows
// failed, S_j is computed again from the K stage at k_base (a P V still in flight is waited for first) and takes
// the whole step, which may move the running max; so release() comes after the vote. Otherwise release() first
// and the whole step.
template <typename T, class C, bool CAUSAL, class Release>
__device__ __forceinline__ void softmax_after_qk(bool skip, float (&sc)[C::kBlockN / 2], float (&o)[C::E / 2],
                                                 const Args& a, int j, bool masked, int row_g, int t, int cw,
                                                 uint32_t q_base, uint32_t k_base, float (&m)[2], float (&l)[2],
                                                 float (&alpha)[2], Release&& release) {
  constexpr int kBlockN = C::kBlockN;
  if (!skip) release();
  if (masked) hide_scores<kBlockN, CAUSAL>(sc, row_g, j * kBlockN, t, a.S, a.causal_offset);
  if (!skip) {
    softmax_step<C>(sc, m, l, alpha, a.scale_log2);
    return;
  }
  float sum[2];
  const bool ok = exps_at_running_max<kBlockN>(sc, m, sum, a.scale_log2);
  if (!ptx::named_bar_any(kWarpgroupBarrier + cw, 128, !ok)) {
    l[0] += sum[0];
    l[1] += sum[1];
    alpha[0] = alpha[1] = 1.f;
  } else {
    ptx::wgmma_wait<0>();
    ptx::fence_operands(o);
    ptx::wgmma_fence();
    issue_qk<T, C>(sc, q_base, k_base);
    ptx::wgmma_wait<0>();
    ptx::fence_operands(sc);
    if (masked) hide_scores<kBlockN, CAUSAL>(sc, row_g, j * kBlockN, t, a.S, a.causal_offset);
    softmax_step<C>(sc, m, l, alpha, a.scale_log2);
  }
  release();
}

// One consumer warpgroup's attention over one work item: 64 query rows starting at
// row0 + 64 * cw; leaves the unnormalised O, the row max m and this thread's partial sums l.
// OVERLAP = false: per tile, S = QK^T, wait, softmax, O += PV, wait (each unit idles while
// the other works, except across the two consumer warpgroups).
// OVERLAP = true (FlashAttention-3's intra-warpgroup pipelining): S for tile j + 1 is issued
// together with PV for tile j, and its softmax runs while PV is still on the tensor cores.
// Inside that window the softmax has no branch (mask or not is chosen per step, around the
// whole batch: plain tiles first, masked ones (key tail, diagonal) after), and end_block()
// keeps ptxas from hoisting wgmma.wait_group 0 above it.
template <typename T, class C, bool CAUSAL, bool OVERLAP, bool PINGPONG, class S>
__device__ __forceinline__ void attend(const Args& a, S& s, int row0, int cw, int n_tiles, const Ring& r,
                                       float (&o)[C::E / 2], float (&m)[2], float (&l)[2]) {
  constexpr int E = C::E, kBlockN = C::kBlockN;
  const int tid = threadIdx.x % 128, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int row_g = row0 + cw * 64 + warp * 16 + g;  // this thread's rows: row_g and row_g + 8
  const int first_row = row0 + cw * 64;
  const Turns<PINGPONG, C::kConsumerWarpgroups> turns{cw};

#pragma unroll
  for (int i = 0; i < E / 2; ++i) o[i] = 0.f;
  m[0] = m[1] = -INFINITY;
  l[0] = l[1] = 0.f;
  float alpha[2];
  float sc[kBlockN / 2];
  uint32_t p[kBlockN / kStepK<T>][4];

  turns.open_first(n_tiles);
  if (n_tiles > 0) ptx::mbar_wait(r.q_full, r.q_parity);
  if (a.negate_q && n_tiles > 0) negate_q_rows<C>(r.q_smem + cw * 64 * 128, cw);
  // In the persistent kernel Q's address is a run-time value per item, and ptxas hoisted the
  // E/16 Q descriptors (64-bit each) out of the tile loop: with 160 registers (three consumer
  // warpgroups) that spilled them (44 bytes, reloaded every step) on 192 x 128 causal, and on
  // 192 x 128 without causal it moved wait_group 0 above all 66 exp2s of a step (57 stay
  // below it this way; SASS, nvcc 13.0). Rebuilding them per step from an opaque copy costs a
  // few integer ops.
  constexpr bool kPersistent = std::is_same<S, typename C::PSmem>::value;
  const uint32_t q_item = r.q_smem + cw * 64 * 128;
  auto q_base = [&] { return kPersistent ? opaque(q_item) : q_item; };
  constexpr bool kAdvance = !(kPersistent && C::kConsumerWarpgroups == 3);  // tile_desc says why
  // K and V rings: kStages K stages; C::kVStages V stages (kStages too, except the float32 kernel's).
  auto stage = [&](int j) { return static_cast<int>((r.g0 + j) % kStages); };
  auto phase = [&](int j) { return ((r.g0 + j) / kStages) & 1; };
  auto vstage = [&](int j) { return static_cast<int>((r.g0 + j) % C::kVStages); };
  auto vphase = [&](int j) { return ((r.g0 + j) / C::kVStages) & 1; };
  auto k_base = [&](int j) { return ptx::smem_addr(s.k[stage(j)]); };
  auto v_base = [&](int j) { return ptx::smem_addr(s.v[vstage(j)]); };
  // Once the item's last Q K^T has retired this warp reads Q no more: the producer may load the
  // next item's Q into that buffer (the persistent kernels; r.q_empty is 0 elsewhere).
  auto release_q = [&] {
    if (r.q_empty != 0 && lane == 0) ptx::mbar_arrive(r.q_empty);
  };
  // The unpipelined loop (the two-CTA E = 64 kernel: 104 registers do not hold both forms of the step without
  // spilling) always skips the row max where C::kSkipMax; the overlapped loop where a.skip_max says so too.
  const bool skip_max = C::kSkipMax && (!OVERLAP || a.skip_max);
  // This warpgroup's own key tiles: the first n_mine of the block's n_tiles (fewer under causal, none for rows
  // past L; pass_over_tiles below takes the rest).
  const int own_end = own_keys_end<C, CAUSAL>(a, row0, first_row);
  const int n_mine = tiles_to<C>(own_end);

  if constexpr (!OVERLAP) {
    for (int j = 0; j < n_mine; ++j) {
      ptx::mbar_wait(&s.k_full[stage(j)], phase(j));
      turns.wait();
      ptx::wgmma_fence();
      issue_qk<T, C, kAdvance>(sc, q_base(), k_base(j));
      turns.pass(false);
      ptx::wgmma_wait<0>();
      ptx::fence_operands(sc);
      softmax_after_qk<T, C, CAUSAL>(skip_max && j > 0, sc, o, a, j, tile_needs_mask<C, CAUSAL>(a, j, first_row), row_g,
                                     t, cw, q_base(), k_base(j), m, l, alpha, [&] {
                                       if (lane == 0) ptx::mbar_arrive(&s.k_empty[stage(j)]);
                                       if (j + 1 == n_mine) release_q();
                                     });
      rescale_o<C>(o, alpha);
      pack_p<T, kBlockN>(sc, p);
      ptx::mbar_wait(&s.v_full[vstage(j)], vphase(j));
      turns.wait();
      ptx::wgmma_fence();
      issue_pv<T, C, kBlockN, kAdvance>(o, p, v_base(j));
      turns.pass(j + 1 == n_tiles);
      ptx::wgmma_wait<0>();
      ptx::fence_operands(o);
      if (lane == 0) ptx::mbar_arrive(&s.v_empty[vstage(j)]);
    }
  } else if (n_mine > 0) {
    const int n_plain = plain_tiles<C, CAUSAL>(a, first_row, n_mine);
    ptx::mbar_wait(&s.k_full[stage(0)], phase(0));
    turns.wait();
    ptx::wgmma_fence();
    issue_qk<T, C, kAdvance>(sc, q_base(), k_base(0));
    turns.pass(false);  // the last turn is always the final PV below
    ptx::wgmma_wait<0>();
    ptx::fence_operands(sc);
    if (lane == 0) ptx::mbar_arrive(&s.k_empty[stage(0)]);
    if (n_mine == 1) release_q();
    softmax_tile<C, CAUSAL>(sc, a, 0, first_row, row_g, t, m, l, alpha);  // O is 0: no rescale
    pack_p<T, kBlockN>(sc, p);

    // Overlapped step j (0 <= j < n - 1): PV_j, and S_{j+1} with its softmax.
    auto step = [&](auto mask_tag, int j) {
      constexpr bool kMask = decltype(mask_tag)::value;
      ptx::mbar_wait(&s.k_full[stage(j + 1)], phase(j + 1));
      ptx::mbar_wait(&s.v_full[vstage(j)], vphase(j));
      turns.wait();
      ptx::wgmma_fence();
      issue_qk<T, C, kAdvance>(sc, q_base(), k_base(j + 1));
      rescale_o<C>(o, alpha);
      ptx::wgmma_fence();
      issue_pv<T, C, kBlockN, kAdvance>(o, p, v_base(j));
      turns.pass(false);
      ptx::wgmma_wait<1>();  // groups retire in order: S_{j+1} is done, PV_j may still run
      ptx::fence_operands(sc);
      softmax_after_qk<T, C, CAUSAL>(skip_max, sc, o, a, j + 1, kMask, row_g, t, cw, q_base(), k_base(j + 1), m, l,
                                     alpha, [&] {
                                       if (lane == 0) ptx::mbar_arrive(&s.k_empty[stage(j + 1)]);
                                       if (j + 2 == n_mine) release_q();
                                     });
      end_block(a.L < 0);  // keeps wait_group 0 below the softmax
      ptx::wgmma_wait<0>();
      ptx::fence_operands(o);
      if (lane == 0) ptx::mbar_arrive(&s.v_empty[vstage(j)]);
      pack_p<T, kBlockN>(sc, p);
    };
    for (int j = 0; j + 1 < n_mine; ++j) {
      if (j + 1 < n_plain)
        step(std::false_type{}, j);
      else
        step(std::true_type{}, j);
    }
    const int j = n_mine - 1;  // the last tile only runs PV, over the keys this warpgroup's rows see
    const int last_keys = a.narrow_tail ? own_end - j * kBlockN : kBlockN;
    ptx::mbar_wait(&s.v_full[vstage(j)], vphase(j));
    turns.wait();
    rescale_o<C>(o, alpha);
    with_tail_width<C, CAUSAL ? C::kCausalTailStep : C::kTailStep>(last_keys, [&](auto w) {
      ptx::wgmma_fence();
      issue_pv<T, C, decltype(w)::value, kAdvance>(o, p, v_base(j));
      turns.pass(n_mine == n_tiles);
      ptx::wgmma_wait<0>();
      ptx::fence_operands(o);
    });
    if (lane == 0) ptx::mbar_arrive(&s.v_empty[vstage(j)]);
  }
  if (n_mine < n_tiles)
    pass_over_tiles<OVERLAP>(n_mine, n_tiles, turns, release_q, [&](int j) {
      ptx::mbar_wait(&s.k_full[stage(j)], phase(j));
      if (lane == 0) ptx::mbar_arrive(&s.k_empty[stage(j)]);
      ptx::mbar_wait(&s.v_full[vstage(j)], vphase(j));
      if (lane == 0) ptx::mbar_arrive(&s.v_empty[vstage(j)]);
    });
}

// Full row sums, 1 / l and LSE = ln 2 * (m c + log2 l) (m in raw units, c = scale * log2 e); empty
// rows give 0 and -inf.
__device__ __forceinline__ void finish_rows(const float (&m)[2], const float (&l)[2], float c, float (&inv)[2],
                                            float (&lse)[2]) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float sum = quad_sum(l[r]);
    inv[r] = sum > 0.f ? 1.f / sum : 0.f;
    lse[r] = sum > 0.f ? fmaf(m[r], c, __log2f(sum)) * 0.69314718055994531f : -INFINITY;
  }
}

// The one-item kernels' epilogue (and E = 256's persistent one, which has no room to stage O): O
// straight from the accumulators. A thread holds two adjacent columns of each 8-column block; one
// exchange with its neighbour lane (t ^ 1) gives it four, so a quad writes 16 columns of a row, one
// 32-byte sector, with four 8-byte stores: half the store instructions of 4-byte stores from the
// accumulators, which wrote half sectors (ncu, E = 256 N = 512: warps stalled on the store queue,
// lg_throttle 0.94 per issued instruction). float O (the TF32 kernel) keeps its 8-byte stores as held.
template <typename T, class C>
__device__ __forceinline__ void store_o_regs(const Args& a, const float (&o)[C::E / 2], const float (&m)[2],
                                             const float (&l)[2], int row0, int cw, int h, int b) {
  constexpr int E = C::E;
  const int tid = threadIdx.x % 128, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int row_g = row0 + cw * 64 + warp * 16 + g;
  float inv[2], lse[2];
  finish_rows(m, l, a.scale_log2, inv, lse);
  T* out = static_cast<T*>(a.out) + b * a.o_sb + h * a.o_sh;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row_g + 8 * r;
    T* orow = out + static_cast<int64_t>(row) * a.o_sl;
    if constexpr (std::is_same<T, float>::value) {
      if (row >= a.L) continue;
#pragma unroll
      for (int jb = 0; jb < E / 8; ++jb) {
        if (8 * jb + 2 * t >= a.ev) break;  // padded columns (Ev is even: launch.cu's output rule)
        *reinterpret_cast<float2*>(orow + 8 * jb + 2 * t) =
            make_float2(o[4 * jb + 2 * r] * inv[r], o[4 * jb + 2 * r + 1] * inv[r]);
      }
    } else {
      const bool odd = t & 1;
      const bool aligned = reinterpret_cast<uintptr_t>(orow) % 8 == 0;  // the columns below are multiples of 4
#pragma unroll
      for (int pair = 0; pair < E / 16; ++pair) {
        // Blocks 2 pair and 2 pair + 1: an even lane gets its neighbour's columns of the first, an odd lane
        // its neighbour's of the second (every lane of the warp shuffles, stored or not).
        const uint32_t first = pack2<T>(o[8 * pair + 2 * r] * inv[r], o[8 * pair + 2 * r + 1] * inv[r]);
        const uint32_t second = pack2<T>(o[8 * pair + 4 + 2 * r] * inv[r], o[8 * pair + 4 + 2 * r + 1] * inv[r]);
        const uint32_t got = __shfl_xor_sync(0xffffffffu, odd ? first : second, 1);
        const uint32_t lo = odd ? got : first, hi = odd ? second : got;
        const int col = 16 * pair + 8 * (t & 1) + 4 * (t >> 1);  // this lane's four columns from here
        if (row >= a.L || col >= a.ev) continue;  // padded columns (Ev is even: launch.cu's output rule)
        T* dst = orow + col;
        if (col + 4 <= a.ev && aligned) {
          *reinterpret_cast<uint2*>(dst) = make_uint2(lo, hi);
        } else {
          *reinterpret_cast<uint32_t*>(dst) = lo;
          if (col + 2 < a.ev) *reinterpret_cast<uint32_t*>(dst + 2) = hi;
        }
      }
    }
    if (a.lse != nullptr && t == 0 && row < a.L) a.lse[(static_cast<int64_t>(b) * a.H + h) * a.L + row] = lse[r];
  }
}

// The persistent kernel's epilogue: the warpgroup writes its 64 x E slice of O into the
// staging tile (the TMA's 128-byte swizzle: 16-byte unit u of row r sits at u ^ (r % 8), which
// also spreads a warp's 32 stores over all 32 banks) and one thread hands it to a TMA store,
// which clips rows past L. Nobody waits for the store: the warpgroup goes on to its next item,
// and only the next epilogue waits until the store has read the tile (by then it long has).
template <typename T, class C>
__device__ __forceinline__ void store_o_tma(const Args& a, const float (&o)[C::E / 2], const float (&m)[2],
                                            const float (&l)[2], int row0, int cw, int h, int b, uint32_t o_tile,
                                            const CUtensorMap* to) {
  constexpr int E = C::E, kBlockM = C::kBlockM;
  const int tid = threadIdx.x % 128, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  float inv[2], lse[2];
  finish_rows(m, l, a.scale_log2, inv, lse);
  const uint32_t slice = o_tile + cw * 64 * 128;
  if (tid == 0) ptx::tma_store_wait_read<0>();
  ptx::named_bar_sync(kWarpgroupBarrier + cw, 128);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = warp * 16 + g + 8 * r;  // row % 8 == g
#pragma unroll
    for (int jb = 0; jb < E / 8; ++jb) {
      const int off = (jb / 8) * kBlockM * 128 + row * 128 + (((jb % 8) ^ g) * 16) + 4 * t;
      ptx::st_shared(slice + off, pack2<T>(o[4 * jb + 2 * r] * inv[r], o[4 * jb + 2 * r + 1] * inv[r]));
    }
  }
  ptx::fence_proxy_async_smem();
  ptx::named_bar_sync(kWarpgroupBarrier + cw, 128);
  if (tid == 0) {
#pragma unroll
    for (int c = 0; c < E / kChunk; ++c)
      ptx::tma_store_4d(to, slice + c * kBlockM * 128, c * kChunk, row0 + cw * 64, h, b);
    ptx::tma_store_commit();
  }
  if (a.lse != nullptr && t == 0) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = row0 + cw * 64 + warp * 16 + g + 8 * r;
      if (row < a.L) a.lse[(static_cast<int64_t>(b) * a.H + h) * a.L + row] = lse[r];
    }
  }
}

// The K/V rings' mbarriers: kStages K stages and C::kVStages V stages; "full" completes on the
// TMA's bytes plus v_arrivals arrivals for V (1: the TMA issuer; the float32 kernel's 128 producer
// threads store V themselves), "empty" on one arrival per consumer warp.
template <class C>
__device__ __forceinline__ void init_barriers_kv(uint64_t* k_full, uint64_t* v_full, uint64_t* k_empty,
                                                 uint64_t* v_empty, uint32_t v_arrivals = 1) {
  constexpr int kRings = kStages > C::kVStages ? kStages : C::kVStages;
  for (int i = 0; i < kRings; ++i) {
    if (i < kStages) ptx::mbar_init(&k_full[i], 1);
    if (i < C::kVStages) ptx::mbar_init(&v_full[i], v_arrivals);
    if (i < kStages) ptx::mbar_init(&k_empty[i], 4 * C::kConsumerWarpgroups);
    if (i < C::kVStages) ptx::mbar_init(&v_empty[i], 4 * C::kConsumerWarpgroups);
  }
}

// One work item: query block row0 of head h, batch b.
struct Item {
  int row0, h, b;
};

// Work item `it` (the one-item grid's CTA `it`, or an item of the persistent kernels' order): query
// block and (b, h). Without causal a head's query blocks are adjacent, so that CTAs running at once
// share K/V in L2. With causal, items differ in length, in one of two orders:
// - a.head_group > 0: heads in groups of a.head_group (the K/V of a group fits in L2), each group
//   longest first (causal_order.h);
// - a.head_group == 0 (the persistent kernels, with cta_item below): each head's blocks as pairs
//   (last, first), (second last, second), ..., whose key tiles add up to about the same.
template <class C, bool CAUSAL>
__device__ __forceinline__ Item item_at(const Args& a, int it) {
  int bh, m_blk;
  if (CAUSAL && a.head_group > 0) {
    grouped_longest_first(it, a.num_m, a.num_items / a.num_m, a.head_group, bh, m_blk);
  } else {
    bh = it / a.num_m;
    m_blk = it % a.num_m;
    if (CAUSAL) m_blk = m_blk % 2 == 0 ? a.num_m - 1 - m_blk / 2 : m_blk / 2;
  }
  return Item{m_blk * C::kBlockM, bh % a.H, bh / a.H};
}

// The persistent kernels' k-th work item on this CTA (num_items or more: none left). A static order:
// items c, c + G, c + 2G, ... on CTA c of G, or under causal with paired items (a.head_group == 0)
// pairs c, c + G, ..., both items of a pair in turn, so every CTA gets about the same number of key
// tiles (NOTES_v4.md step 13).
template <bool CAUSAL>
__device__ __forceinline__ int64_t cta_item(const Args& a, int k) {
  if (CAUSAL && a.head_group == 0) return 2 * (blockIdx.x + static_cast<int64_t>(gridDim.x) * (k / 2)) + k % 2;
  return blockIdx.x + static_cast<int64_t>(gridDim.x) * k;
}

template <typename T, class C, bool CAUSAL, bool OVERLAP, bool PINGPONG>
__global__ void __launch_bounds__(C::kThreads, C::kCtasPerSm)
    v4_fwd_kernel(const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tk,
                  const __grid_constant__ CUtensorMap tv, const Args a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  typename C::Smem& s = smem_layout<typename C::Smem>();

  const Item w = item_at<C, CAUSAL>(a, blockIdx.x);
  const int row0 = w.row0, h = w.h, b = w.b, hk = h / a.group;
  const int n_tiles = key_tiles<C, CAUSAL>(a, row0);

  if (threadIdx.x == 0) {
    ptx::mbar_init(&s.q_full, 1);
    init_barriers_kv<C>(s.k_full, s.v_full, s.k_empty, s.v_empty);
    ptx::fence_mbarrier_init();
  }
  __syncthreads();

  const int wg = ptx::warpgroup_index();
  if (wg == 0) {
    ptx::setmaxnreg_dec<C::kProducerRegs>();
    if (threadIdx.x == 0 && n_tiles > 0) produce<C>(&tq, &tk, &tv, s, row0, h, hk, b, n_tiles);
  } else {
    ptx::setmaxnreg_inc<C::kConsumerRegs>();
    const int cw = wg - 1;
    float o[C::E / 2], m[2], l[2];
    const Ring r{0, ptx::smem_addr(s.q), ptx::smem_addr(&s.q_full), 0, 0};
    attend<T, C, CAUSAL, OVERLAP, PINGPONG>(a, s, row0, cw, n_tiles, r, o, m, l);
    store_o_regs<T, C>(a, o, m, l, row0, cw, h, b);
  }
#else
  __trap();  // built without sm_90a: the host never launches this
#endif
}

// The persistent kernels' mbarriers (kernel.cuh's and kernel_xitem.cuh's), set by thread 0 before
// the CTA's first __syncthreads: C::kQBuffers Q buffers (full: the TMA's bytes; empty: one arrival
// per consumer warp) and the K/V ring.
template <class C>
__device__ __forceinline__ void init_persistent_barriers(typename C::PSmem& s) {
  for (int i = 0; i < C::kQBuffers; ++i) {
    ptx::mbar_init(&s.q_full[i], 1);
    ptx::mbar_init(&s.q_empty[i], 4 * C::kConsumerWarpgroups);
  }
  init_barriers_kv<C>(s.k_full, s.v_full, s.k_empty, s.v_empty);
  ptx::fence_mbarrier_init();
}

// The persistent kernels' producer (one thread): for each of this CTA's work items with a visible
// key, its Q into the next of the two Q buffers once the consumers released that buffer, then its
// K/V tiles through the ring. Items with no key tile load nothing and count nowhere (the consumers
// skip them alike).
template <class C, bool CAUSAL>
__device__ __forceinline__ void produce_items(const CUtensorMap* tq, const CUtensorMap* tk, const CUtensorMap* tv,
                                              const Args& a, typename C::PSmem& s) {
  ptx::tma_prefetch_desc(tq);
  ptx::tma_prefetch_desc(tk);
  ptx::tma_prefetch_desc(tv);
  uint32_t g0 = 0, q_count = 0;  // K/V tiles and Q buffers used so far by this CTA
  for (int k = 0; cta_item<CAUSAL>(a, k) < a.num_items; ++k) {
    const Item w = item_at<C, CAUSAL>(a, static_cast<int>(cta_item<CAUSAL>(a, k)));
    const int n_tiles = key_tiles<C, CAUSAL>(a, w.row0);
    if (n_tiles == 0) continue;
    const uint32_t qb = q_count % C::kQBuffers;
    if (q_count >= C::kQBuffers) ptx::mbar_wait(&s.q_empty[qb], ((q_count / C::kQBuffers) - 1) & 1);
    load_q<C>(tq, ptx::smem_addr(s.q[qb]), &s.q_full[qb], w.row0, w.h, w.b);
    ++q_count;
    produce_kv<C>(tk, tv, s, w.h / a.group, w.b, n_tiles, g0);
    g0 += n_tiles;
  }
}

// Persistent grid (about one CTA per SM): CTA c takes the items cta_item gives it (a static order,
// the same sequence in the producer and in every consumer warpgroup, so they agree on each item's
// tile count without talking). The producer runs ahead into the next item as soon as ring stages
// and a Q buffer free up, so the next item's first Q/K/V loads overlap the current item's last
// tiles and its epilogue, and the epilogue's O store (TMA) overlaps the next item's compute. Items
// with no visible key (causal, rows above the first key) load nothing; their consumers still write
// O = 0 and LSE = -inf.
//
// Barrier phases across items: the K/V ring counts tiles per CTA, not per item (Ring::g0),
// and Q buffers count the items that loaded a Q (items with no key tile skip both sides'
// counters alike), so every barrier's stage and parity follow one running count on both
// sides. A waiter can never be two phases behind: the producer refills a stage or Q buffer
// only after every consumer warp has released its previous use.
template <typename T, class C, bool CAUSAL, bool OVERLAP, bool PINGPONG>
__global__ void __launch_bounds__(C::kThreads, C::kCtasPerSm)
    v4_fwd_persistent_kernel(const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tk,
                             const __grid_constant__ CUtensorMap tv, const __grid_constant__ CUtensorMap to,
                             const Args a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  static_assert(C::kPersistentFits, "v4: persistent layout exceeds shared memory");
  static_assert(C::kConsumerWarpgroups <= 3, "v4: named barrier ids");
  typename C::PSmem& s = smem_layout<typename C::PSmem>();

  if (threadIdx.x == 0) init_persistent_barriers<C>(s);
  __syncthreads();

  const int wg = ptx::warpgroup_index();
  if (wg == 0) {
    ptx::setmaxnreg_dec<C::kProducerRegs>();
    if (threadIdx.x == 0) produce_items<C, CAUSAL>(&tq, &tk, &tv, a, s);
  } else {
    ptx::setmaxnreg_inc<C::kConsumerRegs>();
    const int cw = wg - 1;
    uint32_t g0 = 0, q_count = 0;  // K/V tiles and Q buffers used so far by this CTA
    if (threadIdx.x % 128 == 0) ptx::tma_prefetch_desc(&to);
    for (int k = 0; cta_item<CAUSAL>(a, k) < a.num_items; ++k) {
      const Item w = item_at<C, CAUSAL>(a, static_cast<int>(cta_item<CAUSAL>(a, k)));
      const int n_tiles = key_tiles<C, CAUSAL>(a, w.row0);
      const uint32_t qb = q_count % C::kQBuffers;
      const Ring r{g0, ptx::smem_addr(s.q[qb]), ptx::smem_addr(&s.q_full[qb]), (q_count / C::kQBuffers) & 1,
                   ptx::smem_addr(&s.q_empty[qb])};
      float o[C::E / 2], m[2], l[2];
      attend<T, C, CAUSAL, OVERLAP, PINGPONG>(a, s, w.row0, cw, n_tiles, r, o, m, l);
      if (n_tiles > 0) {
        ++q_count;
        g0 += n_tiles;
      }
      if constexpr (C::kStageO)
        store_o_tma<T, C>(a, o, m, l, w.row0, cw, w.h, w.b, ptx::smem_addr(s.o), &to);
      else
        store_o_regs<T, C>(a, o, m, l, w.row0, cw, w.h, w.b);
    }
    // The CTA's shared memory must outlive the last store's reads of the staging tile.
    if (C::kStageO && threadIdx.x % 128 == 0) ptx::tma_store_wait<0>();
  }
#else
  __trap();  // built without sm_90a: the host never launches this
#endif
}

}  // namespace flash_attn_ext::cuda::v4
