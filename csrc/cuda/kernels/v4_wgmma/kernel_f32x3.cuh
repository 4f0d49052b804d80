// v4_wgmma for float32 inputs, float32-accurate: 3xTF32 (float32_precision='auto' or '3xtf32').
//
// What changes from the TF32 kernel (kernel_f32.cuh), and why:
// - Each float32 operand x is held as two TF32 values, hi = tf32(x) and lo = tf32(x - hi)
//   (split_tf32), and each product a b runs as a_lo b_hi + a_hi b_lo + a_hi b_hi: three TF32
//   wgmmas where the TF32 kernel issues one. The dropped a_lo b_lo and lo's own rounding are
//   about 2^-22 of a b, below float32's rounding of the sums, so the result is as accurate as
//   float32 arithmetic (TF32 alone keeps 11 bits: ~1e-3 relative error, tests/gpu/test_v4_tf32.py).
// - The tensor cores truncate (round toward zero) when they add into an accumulator, a bias that
//   grows with the number of products chained into one register: with O accumulating every tile's
//   products the error was 1.2e-4 of max |out| at N = 16k, 1.0e-6 with the folds below (SDPA
//   efficient 2.2e-6; session 9, device call 12). As in v3's 3xTF32 (warp_mma32.cuh), chains stay
//   short and rounded float32 adds join them: S is summed in a few partial accumulators (hi x hi per
//   32 or 64 columns of E, the lo terms apart: issue_qk_3x), and each 32 keys' P V go
//   into a fresh accumulator that is added to O (two per 64-key tile at E = 64: 2.6e-7 instead of
//   3.9e-7 of max |out| under causal at N = 4096, for 1-3% of the speed; session 9, device call 10).
// - Every operand reaches shared memory through the threads that split it (no tensor maps): each
//   consumer warpgroup loads its 64 rows of Q once per item and writes both halves; the producers
//   (one warpgroup, or at E = 128 one for K and one for V) load K and V tiles and write both halves
//   of each into one slot of a single ring (K as the TMA would store it, V transposed in the TF32
//   kernel's V^T layout, a column per thread: VTileT), K_j and V_j taking turns (config.h CfgF32x3
//   has the budget).
// - P: both halves as RS fragments from the softmax's float32 P (the row sums add P unrounded).
// - The softmax's rescale factor from the two rounded bases (softmax.cuh, EXACT; config.h kExactRescale):
//   with the fused form every tile scaled all earlier keys by 1 +- 1e-7, a drift that grew the error with
//   N (4.4e-5 of max |out| at N = 16k, against SDPA efficient's 1.6e-6; with it 1.1e-6, as v3).
// - Tiles 128 x 32 at E = 128, 128 x 64 at E = 64; the TF32 kernel's unpipelined loop without
//   pingpong.
#pragma once

#include "kernel_f32.cuh"

namespace flash_attn_ext::cuda::v4 {

// Byte offset of (row, col) in a tile of `ROWS` rows of T stored as the TMA stores it: chunks of 128 / sizeof(T)
// columns (one 128-byte row each), 16-byte unit u of row r at u ^ (r % 8). Read K-major (Q, K) or, for 16-bit T,
// MN-major (the 3xF16 kernel's V) alike.
template <int ROWS, typename T = float>
__device__ __forceinline__ uint32_t kmajor_offset(int row, int col) {
  constexpr int kRow = 128 / sizeof(T), kUnit = 16 / sizeof(T);
  return (col / kRow) * (ROWS * 128) + row * 128 + ((((col % kRow) / kUnit) ^ (row % 8)) * 16) +
         (col % kUnit) * sizeof(T);
}

// K's two halves in one operand (32-key tiles, E = 128): each 32-column chunk of a K slot holds 64 rows,
// [K_hi; K_lo] (KTile::store_split), so one n64 wgmma gives Q_hi K_hi^T (columns 0-31) and Q_hi K_lo^T
// (columns 32-63) and reads Q_hi once per k-step instead of twice: 7 KB of shared memory per k-step instead
// of 9 (the L1/shared pipe was 83% busy, the limit, session 9 device call 13). At E = 64 the 64-key tiles
// already read Q_hi once per 64 keys, and a fused n128 accumulator would not fit beside the others.
template <class C>
constexpr bool kFusedK = C::kBlockN == 32;

// A K tile in flight: this thread's BN * E / 512 float4, each 4 adjacent values of one key's row (a
// warp reads 512 contiguous bytes of a row-major tile per instruction).
template <class C>
struct KTile {
  static constexpr int kUnits = C::kBlockN * C::E / (4 * 128);
  float4 x[kUnits];

  __device__ __forceinline__ static void place(int u, int& key, int& col) {
    const int f = u * 128 + threadIdx.x % 128;
    key = f / (C::E / 4);
    col = (f % (C::E / 4)) * 4;
  }

  __device__ __forceinline__ void load(const float* kh, int64_t k_sl, int key0, int key_end) {
    load_tile_rows<KTile>(x, kh, k_sl, key0, key_end);
  }

  // Both halves, four adjacent values per 16-byte store: with kFusedK (above) into one slot at hi as 64-row
  // chunks [K_hi; K_lo] (lo unused), else K_hi at hi and K_lo at lo, each as the TMA would store it.
  __device__ __forceinline__ void store_split(uint32_t hi, uint32_t lo) const {
    constexpr int kRows = kFusedK<C> ? 2 * C::kBlockN : C::kBlockN;
#pragma unroll
    for (int u = 0; u < kUnits; ++u) {
      int key, col;
      place(u, key, col);
      uint32_t h[4], l[4];
      split_tf32(x[u], h, l);
      ptx::st_shared_v4(hi + kmajor_offset<kRows>(key, col), h);
      ptx::st_shared_v4(
          kFusedK<C> ? hi + kmajor_offset<kRows>(C::kBlockN + key, col) : lo + kmajor_offset<kRows>(key, col), l);
    }
  }
};

// A V tile in flight, one value column per thread: column n = tid % E of keys kPerThread * (tid / E) + i,
// so each warp load reads 128 contiguous bytes of one key's row, and each thread holds, for every 8 keys,
// the 4 even and the 4 odd ones that one 16-byte unit of a V^T row takes (vt_offset's key order): the
// transposed stores are 16 bytes wide, and the 8 lanes of a quarter warp write 8 rows n..n+7, whose
// swizzled units differ, so no two share a bank (VTile's 4-byte stores fell 2 lanes to a bank: ncu counted
// 134 M shared-memory wavefronts for its V stores at E = 128 N = 4096, 67 M for these; +2-3% at E = 128,
// E = 64 within noise; session 10, device calls 2 and 3).
template <class C>
struct VTileT {
  static constexpr int kPerThread = C::kBlockN * C::E / 128;
  float x[kPerThread];

  __device__ __forceinline__ static int column() { return threadIdx.x % 128 % C::E; }
  __device__ __forceinline__ static int first_key() { return threadIdx.x % 128 / C::E * kPerThread; }

  __device__ __forceinline__ void load(const float* vh, int64_t v_sl, int key0, int key_end) {
    const int n = column(), k0 = key0 + first_key();
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) x[i] = k0 + i < key_end ? __ldg(vh + (k0 + i) * v_sl + n) : 0.f;
  }

  __device__ __forceinline__ void store_split(uint32_t hi, uint32_t lo) const {
    const int n = column(), k0 = first_key();
#pragma unroll
    for (int b = 0; b < kPerThread / 8; ++b) {
#pragma unroll
      for (int parity = 0; parity < 2; ++parity) {
        uint32_t h[4], l[4];
        split_tf32(make_float4(x[8 * b + parity], x[8 * b + parity + 2], x[8 * b + parity + 4], x[8 * b + parity + 6]),
                   h, l);
        const uint32_t off = vt_offset<C::E>(k0 + 8 * b + parity, n);
        ptx::st_shared_v4(hi + off, h);
        ptx::st_shared_v4(lo + off, l);
      }
    }
  }
};

// Ring use u (K_j at 2j, V_j at 2j + 1): its slot and the parity of its barriers' phase.
template <class C>
__device__ __forceinline__ int slot_of(int u) {
  return u % C::kSlots;
}
template <class C>
__device__ __forceinline__ uint32_t parity_of(int u) {
  return (u / C::kSlots) & 1;
}

// The ring's barriers, before any thread uses them: a slot is full after one warpgroup's 128 arrivals, empty
// after one from each consumer warp.
template <class C>
__device__ __forceinline__ void init_ring_barriers(typename C::Smem& s) {
  if (threadIdx.x == 0) {
    for (int i = 0; i < C::kSlots; ++i) {
      ptx::mbar_init(&s.full[i], 128);
      ptx::mbar_init(&s.empty[i], 4 * C::kConsumerWarpgroups);
    }
    ptx::fence_mbarrier_init();
  }
  __syncthreads();
}

// The producer warpgroups (config.h kProducerWarpgroups): all their threads load, split and store K and
// V tile by tile, each tile loaded before its slot is waited for, so the loads' trip overlaps the waits;
// with two warpgroups one takes K and one V, with one K_j and V_j take turns. Each thread fences its
// stores into the async proxy (wgmma reads the slots) before arriving on the slot's full barrier (128
// arrivals: one warpgroup fills a slot).
template <class C>
__device__ __forceinline__ void produce_f32x3(const ArgsF32x3& a, typename C::Smem& s, const Item& w,
                                              int n_tiles) {
  constexpr int kBlockN = C::kBlockN;
  const int hk = w.h / a.group;
  const float* kh = a.k + w.b * a.k_sb + hk * a.k_sh;
  const float* vh = a.v + w.b * a.v_sb + hk * a.v_sh;
  // Waits until use u's slot is free (every consumer warp released use u - kSlots), returns it.
  auto slot = [&](int u) {
    const int sl = slot_of<C>(u);
    if (u >= C::kSlots) ptx::mbar_wait(&s.empty[sl], parity_of<C>(u - C::kSlots));
    return sl;
  };
  auto publish = [&](int sl) {
    ptx::fence_proxy_async_smem();
    ptx::mbar_arrive(&s.full[sl]);
  };
  // Tile j of K (of V) into its slot, then tile j + 1 on its way.
  auto put_k = [&](KTile<C>& kt, int j) {
    const int ks = slot(2 * j);
    kt.store_split(ptx::smem_addr(s.slot[ks][0]), ptx::smem_addr(s.slot[ks][1]));
    publish(ks);
    if (j + 1 < n_tiles) kt.load(kh, a.k_sl, (j + 1) * kBlockN, a.S);
  };
  auto put_v = [&](VTileT<C>& vt, int j) {
    const int vs = slot(2 * j + 1);
    vt.store_split(ptx::smem_addr(s.slot[vs][0]), ptx::smem_addr(s.slot[vs][1]));
    publish(vs);
    if (j + 1 < n_tiles) vt.load(vh, a.v_sl, (j + 1) * kBlockN, a.S);
  };
  if constexpr (C::kProducerWarpgroups == 2) {  // warpgroup 0 K, warpgroup 1 V
    if (threadIdx.x < 128) {
      KTile<C> kt;
      kt.load(kh, a.k_sl, 0, a.S);
      for (int j = 0; j < n_tiles; ++j) put_k(kt, j);
    } else {
      VTileT<C> vt;
      vt.load(vh, a.v_sl, 0, a.S);
      for (int j = 0; j < n_tiles; ++j) put_v(vt, j);
    }
  } else {  // one warpgroup, K and V in turn
    KTile<C> kt;
    VTileT<C> vt;
    kt.load(kh, a.k_sl, 0, a.S);
    vt.load(vh, a.v_sl, 0, a.S);
    for (int j = 0; j < n_tiles; ++j) {
      put_k(kt, j);
      put_v(vt, j);
    }
  }
}

// This consumer warpgroup's 64 rows of Q, both halves into the CTA's Q tiles (K-major, 128-byte
// swizzle, as the TMA would write them), with 16-byte loads and stores. A negative scale runs on -Q
// (prepare()'s rule); rows past L are zeros. The stores are made visible to wgmma (async proxy)
// before any thread of the warpgroup issues one.
template <class C>
__device__ __forceinline__ void load_q_split(const ArgsF32x3& a, typename C::Smem& s, int row0, int cw, int h,
                                             int b) {
  constexpr int E = C::E;
  const int tid = threadIdx.x % 128;
  const float* qh = a.q + b * a.q_sb + h * a.q_sh;
  const float sign = a.negate_q ? -1.f : 1.f;
  const uint32_t hi = ptx::smem_addr(s.q_hi), lo = ptx::smem_addr(s.q_lo);
#pragma unroll 4
  for (int u = 0; u < 64 * E / (4 * 128); ++u) {
    const int f = u * 128 + tid;
    const int r = cw * 64 + f / (E / 4), col = (f % (E / 4)) * 4;  // r: row in the CTA's tile
    const int row = row0 + r;
    float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
    if (row < a.L) x = __ldg(reinterpret_cast<const float4*>(qh + row * a.q_sl + col));
    uint32_t xh[4], xl[4];
    split_tf32(make_float4(sign * x.x, sign * x.y, sign * x.z, sign * x.w), xh, xl);
    const uint32_t off = kmajor_offset<C::kBlockM>(r, col);
    ptx::st_shared_v4(hi + off, xh);
    ptx::st_shared_v4(lo + off, xl);
  }
  ptx::fence_proxy_async_smem();
  ptx::named_bar_sync(kWarpgroupBarrier + cw, 128);
}

// Partial accumulators of S: hi x hi chains of 4 k-steps (32 columns of E) and one chain of the lo terms;
// fused, chains of 8 k-steps, each holding its hi x lo terms in its upper half.
template <class C>
constexpr int kHiChains = kFusedK<C> ? C::E / 64 : C::E / 32;
template <class C>
constexpr int kHiWidth = kFusedK<C> ? 2 * C::kBlockN : C::kBlockN;

// S = Q K^T in 3xTF32 for this warpgroup's 64 rows and one K slot, issued (not waited for). Unfused: four
// k-steps of Q_hi K_hi^T into each sh[c], every Q_lo K_hi^T and Q_hi K_lo^T into sl. Fused: eight k-steps of
// Q_hi [K_hi; K_lo]^T into each sh[c], every Q_lo K_hi^T into sl. Short chains: the tensor cores truncate as
// they add into an accumulator. Descriptors are built per k-step here and in issue_pv_3x: advancing them by one
// add (kernel.cuh tile_desc) measured 0.5-1.4% slower in this kernel (NOTES_v4.md float32 step 5).
template <class C>
__device__ __forceinline__ void issue_qk_3x(float (&sh)[kHiChains<C>][kHiWidth<C> / 2], float (&sl)[C::kBlockN / 2],
                                            uint32_t q_hi, uint32_t q_lo, uint32_t k_hi, uint32_t k_lo) {
  constexpr int kBlockM = C::kBlockM, kBlockN = C::kBlockN, kSteps = C::E / 8 / kHiChains<C>;
#pragma unroll
  for (int kk = 0; kk < C::E / 8; ++kk) {
    const uint32_t q_off = (kk / 4) * kBlockM * 128 + (kk % 4) * 32;  // k-step inside a 128-byte row
    const uint64_t dqh = ptx::desc_kmajor_sw128(q_hi + q_off), dql = ptx::desc_kmajor_sw128(q_lo + q_off);
    if constexpr (kFusedK<C>) {
      const uint64_t dk = ptx::desc_kmajor_sw128(k_hi + (kk / 4) * 2 * kBlockN * 128 + (kk % 4) * 32);
      ptx::wgmma_ss<float, kBlockN, 0>(sl, dql, dk, kk > 0);  // n32: the chunk's first 32 rows, K_hi
      ptx::wgmma_ss<float, 2 * kBlockN, 0>(sh[kk / kSteps], dqh, dk, kk % kSteps > 0);
    } else {
      const uint32_t k_off = (kk / 4) * kBlockN * 128 + (kk % 4) * 32;
      const uint64_t dkh = ptx::desc_kmajor_sw128(k_hi + k_off);
      ptx::wgmma_ss<float, kBlockN, 0>(sl, dql, dkh, kk > 0);
      ptx::wgmma_ss<float, kBlockN, 0>(sl, dqh, ptx::desc_kmajor_sw128(k_lo + k_off), 1);
      ptx::wgmma_ss<float, kBlockN, 0>(sh[kk / kSteps], dqh, dkh, kk % kSteps > 0);
    }
  }
  ptx::wgmma_commit();
}

// The partial sums of S, added with rounding, the small ones first: S into sl.
template <class C>
__device__ __forceinline__ void join_scores(const float (&sh)[kHiChains<C>][kHiWidth<C> / 2],
                                            float (&sl)[C::kBlockN / 2]) {
#pragma unroll
  for (int i = 0; i < C::kBlockN / 2; ++i) {
    float hi = sh[0][i];
#pragma unroll
    for (int c = 1; c < kHiChains<C>; ++c) hi += sh[c][i];
    if constexpr (kFusedK<C>) {
#pragma unroll
      for (int c = 0; c < kHiChains<C>; ++c) sl[i] += sh[c][i + C::kBlockN / 2];  // columns + 32: hi x lo
    }
    sl[i] += hi;
  }
}

// part[f] = the P V of keys [32 f, 32 f + 32) in 3xTF32 for one V^T slot (old values ignored), issued (not
// waited for): chains of 12 products at most, as v3 folds (warp_mma32.cuh).
template <class C>
constexpr int kFolds = C::kBlockN / 32;

template <class C>
__device__ __forceinline__ void issue_pv_3x(float (&part)[kFolds<C>][C::E / 2],
                                            const uint32_t (&phi)[C::kBlockN / 8][4],
                                            const uint32_t (&plo)[C::kBlockN / 8][4], uint32_t v_hi, uint32_t v_lo) {
#pragma unroll
  for (int kk = 0; kk < C::kBlockN / 8; ++kk) {
    const uint32_t off = (kk / 4) * C::E * 128 + (kk % 4) * 32;
    const uint64_t dvh = ptx::desc_kmajor_sw128(v_hi + off);
    ptx::wgmma_rs<float, C::E, 0>(part[kk / 4], plo[kk], dvh, kk % 4 > 0);
    ptx::wgmma_rs<float, C::E, 0>(part[kk / 4], phi[kk], ptx::desc_kmajor_sw128(v_lo + off), 1);
    ptx::wgmma_rs<float, C::E, 0>(part[kk / 4], phi[kk], dvh, 1);
  }
  ptx::wgmma_commit();
}

// P's two halves as RS A fragments, in pack_p's float order (columns 2t, 2t + 1 as A columns t, t + 4).
template <int N>
__device__ __forceinline__ void pack_p_split(const float (&sc)[N / 2], uint32_t (&phi)[N / 8][4],
                                             uint32_t (&plo)[N / 8][4]) {
#pragma unroll
  for (int kk = 0; kk < N / 8; ++kk) {
    split_tf32(sc[4 * kk + 0], phi[kk][0], plo[kk][0]);
    split_tf32(sc[4 * kk + 2], phi[kk][1], plo[kk][1]);
    split_tf32(sc[4 * kk + 1], phi[kk][2], plo[kk][2]);
    split_tf32(sc[4 * kk + 3], phi[kk][3], plo[kk][3]);
  }
}

// One consumer warpgroup over one item: per key tile, S = Q K^T, wait, mask + online softmax,
// part = P V, wait, O = alpha O + part (attend()'s unpipelined loop with the 3x products).
template <class C, bool CAUSAL>
__device__ __forceinline__ void attend_3x(const ArgsF32x3& a, typename C::Smem& s, int row0, int cw, int n_tiles,
                                          float (&o)[C::E / 2], float (&m)[2], float (&l)[2]) {
  constexpr int kBlockN = C::kBlockN;
  const int tid = threadIdx.x % 128, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int first_row = row0 + cw * 64;
  const int row_g = first_row + warp * 16 + g;
  const uint32_t q_hi = ptx::smem_addr(s.q_hi) + cw * 64 * 128, q_lo = ptx::smem_addr(s.q_lo) + cw * 64 * 128;
#pragma unroll
  for (int i = 0; i < C::E / 2; ++i) o[i] = 0.f;
  m[0] = m[1] = -INFINITY;
  l[0] = l[1] = 0.f;
  float sh[kHiChains<C>][kHiWidth<C> / 2], sc[kBlockN / 2], part[kFolds<C>][C::E / 2], alpha[2];
  uint32_t phi[kBlockN / 8][4], plo[kBlockN / 8][4];
  for (int j = 0; j < n_tiles; ++j) {
    const int ks = slot_of<C>(2 * j), vs = slot_of<C>(2 * j + 1);
    ptx::mbar_wait(&s.full[ks], parity_of<C>(2 * j));
    ptx::wgmma_fence();
    issue_qk_3x<C>(sh, sc, q_hi, q_lo, ptx::smem_addr(s.slot[ks][0]), ptx::smem_addr(s.slot[ks][1]));
    ptx::wgmma_wait<0>();
    ptx::fence_operands(sc);
#pragma unroll
    for (int c = 0; c < kHiChains<C>; ++c) ptx::fence_operands(sh[c]);
    if (lane == 0) ptx::mbar_arrive(&s.empty[ks]);
    join_scores<C>(sh, sc);
    softmax_tile<C, CAUSAL>(sc, a, j, first_row, row_g, t, m, l, alpha);
    pack_p_split<kBlockN>(sc, phi, plo);
    ptx::mbar_wait(&s.full[vs], parity_of<C>(2 * j + 1));
    ptx::wgmma_fence();
    issue_pv_3x<C>(part, phi, plo, ptx::smem_addr(s.slot[vs][0]), ptx::smem_addr(s.slot[vs][1]));
    ptx::wgmma_wait<0>();
#pragma unroll
    for (int f = 0; f < kFolds<C>; ++f) ptx::fence_operands(part[f]);
    if (lane == 0) ptx::mbar_arrive(&s.empty[vs]);
#pragma unroll
    for (int i = 0; i < C::E / 2; ++i) {
      float sum = part[0][i];
#pragma unroll
      for (int f = 1; f < kFolds<C>; ++f) sum += part[f][i];
      o[i] = fmaf(o[i], alpha[(i / 2) % 2], sum);
    }
  }
}

template <class C, bool CAUSAL>
__global__ void __launch_bounds__(C::kThreads, 1) v4_fwd_f32x3_kernel(const ArgsF32x3 a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  typename C::Smem& s = smem_layout<typename C::Smem>();

  const Item w = item_at<C, CAUSAL>(a, blockIdx.x);
  const int n_tiles = key_tiles<C, CAUSAL>(a, w.row0);

  init_ring_barriers<C>(s);

  const int wg = ptx::warpgroup_index();
  if (wg < C::kProducerWarpgroups) {
    ptx::setmaxnreg_dec<C::kProducerRegs>();
    if (n_tiles > 0) produce_f32x3<C>(a, s, w, n_tiles);
  } else {
    ptx::setmaxnreg_inc<C::kConsumerRegs>();
    const int cw = wg - C::kProducerWarpgroups;
    float o[C::E / 2], m[2], l[2];
    if (n_tiles > 0) load_q_split<C>(a, s, w.row0, cw, w.h, w.b);
    attend_3x<C, CAUSAL>(a, s, w.row0, cw, n_tiles, o, m, l);
    store_o_regs<float, C>(a, o, m, l, w.row0, cw, w.h, w.b);
  }
#else
  __trap();  // built without sm_90a: the host never launches this
#endif
}

}  // namespace flash_attn_ext::cuda::v4
