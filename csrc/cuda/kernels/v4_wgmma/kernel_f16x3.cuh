// v4_wgmma for float32 inputs, float32-accurate on fp16 tensor cores: 3xF16 with power-of-two tile scales
// (float32_precision='auto' on sm_90).
//
// What changes from the 3xTF32 kernel (kernel_f32x3.cuh), and why:
// - TF32 keeps 11 significant bits, and so does fp16; fp16 lacks only TF32's exponent range. wgmma multiplies
//   fp16 at twice TF32's rate and reads half the shared-memory bytes per product, so the same three products
//   per product (lo hi + hi lo + hi hi, the same short accumulator chains) cost about half as much.
// - The range comes back through powers of two, which are exact: each K tile and each consumer warpgroup's 64
//   rows of Q are multiplied by 2^s before the split, s chosen from the block's largest finite |x| so that it
//   lands in [2^14, 2^15) (tile_exponent); each V tile by the smallest such exponent so far (a running scale:
//   O changes units only when a V tile brings a larger value, two multiplies per tile rather than one per O
//   value, +1-5%). S comes back through the softmax's c (c 2^-s_q 2^-s_k, +1-7%), O at the end; P (at most 1:
//   the running max is exact) enters as P 2^15. A value far below its block's largest (under 2^-17 of it;
//   for V, of the largest so far) has fp16 halves with fewer bits: an absolute error under 2^-39 of that
//   largest value, where float32 keeps 2^-24 of the value itself. Q and K blocks whose largest value is below
//   2^-112 are scaled by 2^126 only, V below 2^-97 by 2^111, and float32 subnormal inputs are flushed to zero
//   (--use_fast_math).
// - fp16 operands may be MN-major, so V is stored as it comes (rows of keys, the 16-bit kernel's layout) and
//   every tile is written with 16-byte stores of 8 fp16 values.
// - The producers find each tile's largest value before storing it: a warp reduction and one named barrier
//   per tile; its exponent goes to the consumers beside the tile (Smem::exps).
// - Descriptors advance by one add per k-step (ptx::desc_advance; +0-5% here, where the 3xTF32 kernel lost).
// Everything else is the 3xTF32 kernel's: the ring of slots K_j and V_j take in turn, producers that load
// through registers, P's halves as RS fragments, the exact rescale, the unpipelined loop.
//
// What it measured (H200, B N = 16k, H = 2048 / E; benchmarks/NOTES_v4.md float32 step 6): E = 128, N = 4096
// 127.7 TFLOP/s against the 3xTF32 kernel's 90 and SDPA efficient's 45.4 (2.8x), error 7.2e-7 of max |out|
// (SDPA 1.4e-6); E = 64 3.3x.
#pragma once

#include "kernel_f32x3.cuh"

namespace flash_attn_ext::cuda::v4 {

// |x|'s float bits if x is finite, else 0: unsigned order of these is the order of |x|.
__device__ __forceinline__ uint32_t finite_abs_bits(float x) {
  const uint32_t b = __float_as_uint(x) & 0x7fffffffu;
  return b < 0x7f800000u ? b : 0u;
}

// The largest of m and the finite_abs_bits of x's four values.
__device__ __forceinline__ uint32_t max_finite_bits(uint32_t m, const float4& x) {
  return max(max(m, max(finite_abs_bits(x.x), finite_abs_bits(x.y))), max(finite_abs_bits(x.z), finite_abs_bits(x.w)));
}

// s such that 2^s times the value with float bits `max_bits` (0: the block is zeros, or holds no finite
// value) lies in [2^14, 2^15): 14 - floor(log2 max), at most LIMIT, so that the factors that scale the results
// back stay normal floats: 126 for Q and K (S's two scales together, times_pow2), 111 for V (2^-(15 + s)).
template <int LIMIT>
__device__ __forceinline__ int tile_exponent(uint32_t max_bits) {
  return min(14 - (static_cast<int>(max_bits >> 23) - 127), LIMIT);
}
constexpr int kQKExponentLimit = 126, kVExponentLimit = 111;

// 2^s as a float, s in [-126, 127].
__device__ __forceinline__ float pow2(int s) { return __int_as_float((s + 127) << 23); }

// x 2^s for s in [-252, 226] (S's two scales together), as two exact factors, each a normal float: an
// intermediate never overflows or underflows unless the result does.
__device__ __forceinline__ float times_pow2(float x, int s) {
  const int s1 = s >> 1;
  return x * pow2(s1) * pow2(s - s1);
}

// Two scaled values as fp16 halves, hi = fp16(x), lo = fp16(x - hi) (x - hi is exact in float32), each
// pair in one register, a in the low 16 bits.
__device__ __forceinline__ void split_f16x2(float a, float b, uint32_t& hi, uint32_t& lo) {
  hi = pack2<__half>(a, b);
  const float2 h = unpack2<__half>(hi);
  lo = pack2<__half>(a - h.x, b - h.y);
}

// Eight values (two float4) times f as fp16 halves, four registers each.
__device__ __forceinline__ void split_f16x8(const float4& x, const float4& y, float f, uint32_t (&hi)[4],
                                            uint32_t (&lo)[4]) {
  split_f16x2(x.x * f, x.y * f, hi[0], lo[0]);
  split_f16x2(x.z * f, x.w * f, hi[1], lo[1]);
  split_f16x2(y.x * f, y.y * f, hi[2], lo[2]);
  split_f16x2(y.z * f, y.w * f, hi[3], lo[3]);
}

// A K or V tile in flight: this thread's BN * E / 1024 units of 8 adjacent values of one key's row, as
// two float4 each; a quarter warp's 16-byte stores of one unit fill one swizzled row, no bank twice.
template <class C>
struct RowTile {
  static constexpr int kUnits = C::kBlockN * C::E / (8 * 128);
  float4 x[2 * kUnits];

  // float4 v: half v % 2 of unit v / 2.
  __device__ __forceinline__ static void place(int v, int& key, int& col) {
    const int f = (v / 2) * 128 + threadIdx.x % 128;
    key = f / (C::E / 8);
    col = (f % (C::E / 8)) * 8 + (v % 2) * 4;
  }

  // Columns at or past col_end (the head dim) as zeros where C::kPadded.
  __device__ __forceinline__ void load(const float* rows, int64_t row_stride, int key0, int key_end,
                                       int col_end) {
    load_tile_rows<RowTile, C::kPadded>(x, rows, row_stride, key0, key_end, col_end);
  }

  __device__ __forceinline__ uint32_t max_bits() const {
    uint32_t m = 0;
#pragma unroll
    for (int v = 0; v < 2 * kUnits; ++v) m = max_finite_bits(m, x[v]);
    return m;
  }

  // Both halves of x f: hi at row r of a ROWS-row tile at `hi`, lo at row r + LO_ROW of the tile at `lo`.
  template <int ROWS, int LO_ROW>
  __device__ __forceinline__ void store_split(uint32_t hi, uint32_t lo, float f) const {
#pragma unroll
    for (int u = 0; u < kUnits; ++u) {
      int key, col;
      place(2 * u, key, col);
      uint32_t h[4], l[4];
      split_f16x8(x[2 * u], x[2 * u + 1], f, h, l);
      ptx::st_shared_v4(hi + kmajor_offset<ROWS, uint16_t>(key, col), h);
      ptx::st_shared_v4(lo + kmajor_offset<ROWS, uint16_t>(key + LO_ROW, col), l);
    }
  }
};

// The largest of the 128 threads' `bits` of a warpgroup: one reduction per warp, the four results through
// red (two buffers used in turn, so a thread still reading one use's results is never overwritten by the
// next) and named barrier `bar`.
__device__ __forceinline__ uint32_t warpgroup_max(uint32_t bits, uint32_t (&red)[2][4], int use, int bar) {
  bits = __reduce_max_sync(0xffffffffu, bits);
  const int warp = threadIdx.x % 128 / 32;
  if (threadIdx.x % 32 == 0) red[use % 2][warp] = bits;
  ptx::named_bar_sync(bar, 128);
  return max(max(red[use % 2][0], red[use % 2][1]), max(red[use % 2][2], red[use % 2][3]));
}

constexpr int kProducerBarrier = kWarpgroupBarrier + 2;  // + producer warpgroup (consumers use + 0, + 1)

// The producer warpgroups: as produce_f32x3, each tile scaled by its power of two on the way in; the
// exponent is written beside the tile and published by the same arrival on the slot's full barrier.
template <class C>
__device__ __forceinline__ void produce_f16x3(const ArgsF32x3& a, typename C::Smem& s, const Item& w,
                                              int n_tiles) {
  constexpr int kBlockN = C::kBlockN, kTile = C::kTileElems * 2;  // bytes of one half of a slot
  const int hk = w.h / a.group, pw = ptx::warpgroup_index();
  const float* kh = a.k + w.b * a.k_sb + hk * a.k_sh;
  const float* vh = a.v + w.b * a.v_sb + hk * a.v_sh;
  int uses = 0;  // tiles this warpgroup has reduced (red's buffer)
  int v_run = kVExponentLimit;  // the smallest V exponent so far
  // Tile t (K if IS_K, else V) into ring use u's slot.
  auto put = [&](RowTile<C>& t, int u, auto is_k) {
    constexpr bool IS_K = decltype(is_k)::value;
    int e = tile_exponent<IS_K ? kQKExponentLimit : kVExponentLimit>(
        warpgroup_max(t.max_bits(), s.red[pw], uses++, kProducerBarrier + pw));
    if constexpr (!IS_K) e = v_run = min(e, v_run);
    const int sl = slot_of<C>(u);
    if (u >= C::kSlots) ptx::mbar_wait(&s.empty[sl], parity_of<C>(u - C::kSlots));
    const uint32_t base = ptx::smem_addr(s.slot[sl][0]);
    if constexpr (IS_K && kFusedK<C>) t.template store_split<2 * kBlockN, kBlockN>(base, base, pow2(e));
    else t.template store_split<kBlockN, 0>(base, base + kTile, pow2(e));
    if (threadIdx.x % 128 == 0) s.exps[sl] = e;
    ptx::fence_proxy_async_smem();
    ptx::mbar_arrive(&s.full[sl]);
  };
  auto stream = [&](RowTile<C>& t, const float* rows, int64_t stride, int j, auto is_k) {
    put(t, 2 * j + (is_k ? 0 : 1), is_k);
    if (j + 1 < n_tiles) t.load(rows, stride, (j + 1) * kBlockN, a.S, a.ev);
  };
  using K = std::true_type;
  using V = std::false_type;
  if constexpr (C::kProducerWarpgroups == 2) {  // warpgroup 0 K, warpgroup 1 V
    RowTile<C> t;
    if (pw == 0) {
      t.load(kh, a.k_sl, 0, a.S, a.ev);
      for (int j = 0; j < n_tiles; ++j) stream(t, kh, a.k_sl, j, K{});
    } else {
      t.load(vh, a.v_sl, 0, a.S, a.ev);
      for (int j = 0; j < n_tiles; ++j) stream(t, vh, a.v_sl, j, V{});
    }
  } else {  // one warpgroup, K and V in turn
    RowTile<C> kt, vt;
    kt.load(kh, a.k_sl, 0, a.S, a.ev);
    vt.load(vh, a.v_sl, 0, a.S, a.ev);
    for (int j = 0; j < n_tiles; ++j) {
      stream(kt, kh, a.k_sl, j, K{});
      stream(vt, vh, a.v_sl, j, V{});
    }
  }
}

// This consumer warpgroup's 64 rows of Q times 2^s_q, both halves into the CTA's Q tiles (as the TMA would
// write them); returns s_q. Two passes over the rows (the largest value first; the second pass reads
// from L1 or L2). A negative scale runs on -Q; rows past L and columns past the head dim are zeros.
template <class C>
__device__ __forceinline__ int load_q_f16x3(const ArgsF32x3& a, typename C::Smem& s, int row0, int cw, int h,
                                            int b) {
  constexpr int E = C::E, kUnits = 64 * E / (8 * 128);
  const int tid = threadIdx.x % 128;
  const float* qh = a.q + b * a.q_sb + h * a.q_sh;
  // Unit u: the 8 values (row r of the CTA's tile, col..col + 7) into x, y.
  auto load = [&](int u, int& r, int& col, float4& x, float4& y) {
    const int f = u * 128 + tid;
    r = cw * 64 + f / (E / 8);
    col = (f % (E / 8)) * 8;
    const float4* p = reinterpret_cast<const float4*>(qh + (row0 + r) * a.q_sl + col);
    const bool row_in = row0 + r < a.L;
    x = row_in && (!C::kPadded || col < a.ev) ? __ldg(p) : make_float4(0.f, 0.f, 0.f, 0.f);
    y = row_in && (!C::kPadded || col + 4 < a.ev) ? __ldg(p + 1) : make_float4(0.f, 0.f, 0.f, 0.f);
  };
  uint32_t bits = 0;
#pragma unroll 4
  for (int u = 0; u < kUnits; ++u) {
    int r, col;
    float4 x, y;
    load(u, r, col, x, y);
    bits = max_finite_bits(max_finite_bits(bits, x), y);
  }
  const int e = tile_exponent<kQKExponentLimit>(warpgroup_max(bits, s.red[2 + cw], 0, kWarpgroupBarrier + cw));
  const float f = a.negate_q ? -pow2(e) : pow2(e);
  const uint32_t hi = ptx::smem_addr(s.q_hi), lo = ptx::smem_addr(s.q_lo);
#pragma unroll 4
  for (int u = 0; u < kUnits; ++u) {
    int r, col;
    float4 x, y;
    load(u, r, col, x, y);
    uint32_t xh[4], xl[4];
    split_f16x8(x, y, f, xh, xl);
    ptx::st_shared_v4(hi + kmajor_offset<C::kBlockM, uint16_t>(r, col), xh);
    ptx::st_shared_v4(lo + kmajor_offset<C::kBlockM, uint16_t>(r, col), xl);
  }
  ptx::fence_proxy_async_smem();
  ptx::named_bar_sync(kWarpgroupBarrier + cw, 128);
  return e;
}

// S = Q K^T in 3xF16 for this warpgroup's 64 rows and one K slot, issued (not waited for): issue_qk_3x's
// chains (the same number of products per accumulator) with k16 steps.
template <class C>
__device__ __forceinline__ void issue_qk_f16x3(float (&sh)[kHiChains<C>][kHiWidth<C> / 2],
                                               float (&sl)[C::kBlockN / 2], uint32_t q_hi, uint32_t q_lo,
                                               uint32_t k_hi, uint32_t k_lo) {
  constexpr int kBlockM = C::kBlockM, kBlockN = C::kBlockN, kSteps = C::E / 16 / kHiChains<C>;
  const uint64_t dqh0 = ptx::desc_kmajor_sw128(q_hi), dql0 = ptx::desc_kmajor_sw128(q_lo);
  const uint64_t dkh0 = ptx::desc_kmajor_sw128(k_hi), dkl0 = ptx::desc_kmajor_sw128(k_lo);
#pragma unroll
  for (int kk = 0; kk < C::E / 16; ++kk) {
    const uint32_t q_off = (kk / 4) * kBlockM * 128 + (kk % 4) * 32;
    const uint64_t dqh = ptx::desc_advance(dqh0, q_off), dql = ptx::desc_advance(dql0, q_off);
    if constexpr (kFusedK<C>) {
      const uint64_t dk = ptx::desc_advance(dkh0, (kk / 4) * 2 * kBlockN * 128 + (kk % 4) * 32);
      ptx::wgmma_ss<__half, kBlockN, 0>(sl, dql, dk, kk > 0);
      ptx::wgmma_ss<__half, 2 * kBlockN, 0>(sh[kk / kSteps], dqh, dk, kk % kSteps > 0);
    } else {
      const uint32_t k_off = (kk / 4) * kBlockN * 128 + (kk % 4) * 32;
      const uint64_t dkh = ptx::desc_advance(dkh0, k_off);
      ptx::wgmma_ss<__half, kBlockN, 0>(sl, dql, dkh, kk > 0);
      ptx::wgmma_ss<__half, kBlockN, 0>(sl, dqh, ptx::desc_advance(dkl0, k_off), 1);
      ptx::wgmma_ss<__half, kBlockN, 0>(sh[kk / kSteps], dqh, dkh, kk % kSteps > 0);
    }
  }
  ptx::wgmma_commit();
}

// part[f] = the P V of keys [32 f, 32 f + 32) in 3xF16 for one V slot (V as stored, read MN-major), issued.
template <class C>
__device__ __forceinline__ void issue_pv_f16x3(float (&part)[kFolds<C>][C::E / 2],
                                               const uint32_t (&phi)[C::kBlockN / 16][4],
                                               const uint32_t (&plo)[C::kBlockN / 16][4], uint32_t v_hi,
                                               uint32_t v_lo) {
  const uint64_t dvh0 = ptx::make_desc_sw128(v_hi, kVLeadBytes<C>, kVStrideBytes);
  const uint64_t dvl0 = ptx::make_desc_sw128(v_lo, kVLeadBytes<C>, kVStrideBytes);
#pragma unroll
  for (int kk = 0; kk < C::kBlockN / 16; ++kk) {
    const uint32_t off = kk * 16 * 128;
    const uint64_t dvh = ptx::desc_advance(dvh0, off);
    const uint64_t dvl = ptx::desc_advance(dvl0, off);
    ptx::wgmma_rs<__half, C::E, 1>(part[kk / 2], plo[kk], dvh, kk % 2 > 0);
    ptx::wgmma_rs<__half, C::E, 1>(part[kk / 2], phi[kk], dvl, 1);
    ptx::wgmma_rs<__half, C::E, 1>(part[kk / 2], phi[kk], dvh, 1);
  }
  ptx::wgmma_commit();
}

// P 2^15 as fp16 halves in the m64k16 A layout (pack_p's 16-bit order).
template <int N>
__device__ __forceinline__ void pack_p_f16x3(const float (&sc)[N / 2], uint32_t (&phi)[N / 16][4],
                                             uint32_t (&plo)[N / 16][4]) {
  constexpr float kP = 32768.f;
#pragma unroll
  for (int kk = 0; kk < N / 16; ++kk) {
#pragma unroll
    for (int r = 0; r < 4; ++r)
      split_f16x2(sc[8 * kk + 2 * r] * kP, sc[8 * kk + 2 * r + 1] * kP, phi[kk][r], plo[kk][r]);
  }
}

// One consumer warpgroup over one item: attend_3x's loop with fp16 halves, S and P V scaled back per tile.
template <class C, bool CAUSAL>
__device__ __forceinline__ void attend_f16x3(const ArgsF32x3& a, typename C::Smem& s, int row0, int cw,
                                             int n_tiles, int q_exp, float (&o)[C::E / 2], float (&m)[2],
                                             float (&l)[2]) {
  constexpr int kBlockN = C::kBlockN, kTile = C::kTileElems * 2;
  const int tid = threadIdx.x % 128, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int first_row = row0 + cw * 64;
  const int row_g = first_row + warp * 16 + g;
  const uint32_t q_hi = ptx::smem_addr(s.q_hi) + cw * 64 * 128, q_lo = ptx::smem_addr(s.q_lo) + cw * 64 * 128;
#pragma unroll
  for (int i = 0; i < C::E / 2; ++i) o[i] = 0.f;
  m[0] = m[1] = -INFINITY;
  l[0] = l[1] = 0.f;
  float sh[kHiChains<C>][kHiWidth<C> / 2], sc[kBlockN / 2], part[kFolds<C>][C::E / 2], alpha[2];
  uint32_t phi[kBlockN / 16][4], plo[kBlockN / 16][4];
  int v_now = kVExponentLimit;  // O is held times 2^(15 + v_now): the last V tile's scale (produce_f16x3)
  for (int j = 0; j < n_tiles; ++j) {
    const int ks = slot_of<C>(2 * j), vs = slot_of<C>(2 * j + 1);
    ptx::mbar_wait(&s.full[ks], parity_of<C>(2 * j));
    const int s_exp = -(q_exp + s.exps[ks]);  // S = (Q 2^s_q)(K 2^s_k)^T 2^s_exp
    const uint32_t kb = ptx::smem_addr(s.slot[ks][0]);
    ptx::wgmma_fence();
    issue_qk_f16x3<C>(sh, sc, q_hi, q_lo, kb, kb + kTile);
    ptx::wgmma_wait<0>();
    ptx::fence_operands(sc);
#pragma unroll
    for (int c = 0; c < kHiChains<C>; ++c) ptx::fence_operands(sh[c]);
    if (lane == 0) ptx::mbar_arrive(&s.empty[ks]);
    join_scores<C>(sh, sc);
    // S's scale goes into the softmax's two multiplies per row where c 2^s_exp is an ordinary float (always,
    // but at the far ends of float32's range), else into every score.
    const bool fold = s_exp >= -126 && s_exp <= 127;
    const float f = pow2(fold ? s_exp : 0), cf = a.scale_log2 * f;
    if (fold && cf > 0x1p-100f && cf < 0x1p100f) {
      softmax_tile<C, CAUSAL, true>(sc, a, j, first_row, row_g, t, m, l, alpha, f);
    } else {
#pragma unroll
      for (int i = 0; i < kBlockN / 2; ++i) sc[i] = times_pow2(sc[i], s_exp);
      softmax_tile<C, CAUSAL>(sc, a, j, first_row, row_g, t, m, l, alpha);
    }
    pack_p_f16x3<kBlockN>(sc, phi, plo);
    ptx::mbar_wait(&s.full[vs], parity_of<C>(2 * j + 1));
    const int v_exp = s.exps[vs];  // <= v_now
    const uint32_t vb = ptx::smem_addr(s.slot[vs][0]);
    ptx::wgmma_fence();
    issue_pv_f16x3<C>(part, phi, plo, vb, vb + kTile);
    ptx::wgmma_wait<0>();
#pragma unroll
    for (int f = 0; f < kFolds<C>; ++f) ptx::fence_operands(part[f]);
    if (lane == 0) ptx::mbar_arrive(&s.empty[vs]);
    // Into O's units: a V tile with a smaller exponent moves O to it (exact; what falls below 2^-126 of the
    // new scale is dropped), two multiplies per tile instead of one per O value.
    const int d = v_exp - v_now;
    const float r = d < -126 ? 0.f : pow2(d);
    alpha[0] *= r;
    alpha[1] *= r;
    v_now = v_exp;
#pragma unroll
    for (int i = 0; i < C::E / 2; ++i) {
      float sum = part[0][i];
#pragma unroll
      for (int f = 1; f < kFolds<C>; ++f) sum += part[f][i];
      o[i] = fmaf(o[i], alpha[(i / 2) % 2], sum);
    }
  }
  const float u = pow2(-(15 + v_now));
#pragma unroll
  for (int i = 0; i < C::E / 2; ++i) o[i] *= u;
}

template <class C, bool CAUSAL>
__global__ void __launch_bounds__(C::kThreads, 1) v4_fwd_f16x3_kernel(const ArgsF32x3 a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  typename C::Smem& s = smem_layout<typename C::Smem>();

  const Item w = item_at<C, CAUSAL>(a, blockIdx.x);
  const int n_tiles = key_tiles<C, CAUSAL>(a, w.row0);

  init_ring_barriers<C>(s);

  const int wg = ptx::warpgroup_index();
  if (wg < C::kProducerWarpgroups) {
    ptx::setmaxnreg_dec<C::kProducerRegs>();
    if (n_tiles > 0) produce_f16x3<C>(a, s, w, n_tiles);
  } else {
    ptx::setmaxnreg_inc<C::kConsumerRegs>();
    const int cw = wg - C::kProducerWarpgroups;
    float o[C::E / 2], m[2], l[2];
    const int q_exp = n_tiles > 0 ? load_q_f16x3<C>(a, s, w.row0, cw, w.h, w.b) : 0;
    attend_f16x3<C, CAUSAL>(a, s, w.row0, cw, n_tiles, q_exp, o, m, l);
    store_o_regs<float, C>(a, o, m, l, w.row0, cw, w.h, w.b);
  }
#else
  __trap();  // built without sm_90a: the host never launches this
#endif
}

}  // namespace flash_attn_ext::cuda::v4
