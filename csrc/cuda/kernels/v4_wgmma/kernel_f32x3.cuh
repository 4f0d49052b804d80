// v4_wgmma for float32 inputs, float32-accurate: 3xTF32 (float32_precision='auto' or '3xtf32').
//
// What changes from the TF32 kernel (kernel_f32.cuh), and why:
// - Each float32 operand x is held as two TF32 values, hi = tf32(x) and lo = tf32(x - hi)
//   (split_tf32), and each product a b runs as a_lo b_hi + a_hi b_lo + a_hi b_hi: three TF32
//   wgmmas where the TF32 kernel issues one. The dropped a_lo b_lo and lo's own rounding are
//   about 2^-22 of a b, below float32's rounding of the sums, so the result is as accurate as
//   float32 arithmetic (TF32 alone keeps 11 bits: ~1e-3 relative error, tests/gpu/test_v4_tf32.py).
// - Shared memory has no room for a lo copy of everything at the TF32 kernel's tiles, so:
//   Q: each consumer warpgroup loads its 64 rows once per item with plain loads, writes hi into
//      the Q tile (the K-major 128-byte swizzle the TMA would write) and keeps lo in registers
//      as RS A fragments: Q_lo K_hi^T is an RS wgmma, Q_hi K_lo^T and Q_hi K_hi^T are SS;
//   K: the producer warpgroup loads each tile with 16-byte loads and writes both halves, each
//      into its own stage in the TMA's layout (KTile below);
//   V: transposed by the producer as in the TF32 kernel, both halves (VTile::store_split);
//   P: both halves as RS fragments from the softmax's float32 P (the row sums add P unrounded).
//   No tensor maps: every byte reaches shared memory through the threads that split it.
// - Tiles (config.h CfgF32x3): 128 x 32 at E = 128 (Q's lo half takes 64 registers beside O's
//   64), 128 x 64 at E = 64. The loop is the TF32 kernel's unpipelined one without pingpong.
#pragma once

#include "kernel_f32.cuh"

namespace flash_attn_ext::cuda::v4 {

// Byte offset of (row, col) in a K-major tile of `rows` rows stored as the TMA stores it: chunks of
// 32 floats (one 128-byte row each), 16-byte unit u of row r at u ^ (r % 8).
template <int ROWS>
__device__ __forceinline__ uint32_t kmajor_offset(int row, int col) {
  return (col / 32) * (ROWS * 128) + row * 128 + ((((col % 32) / 4) ^ (row % 8)) * 16) + (col % 4) * 4;
}

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

  // K rows [key0, key0 + BN) of one (b, kv head); rows at or past key_end as zeros.
  __device__ __forceinline__ void load(const float* kh, int64_t k_sl, int key0, int key_end) {
#pragma unroll
    for (int u = 0; u < kUnits; ++u) {
      int key, col;
      place(u, key, col);
      x[u] = key0 + key < key_end ? __ldg(reinterpret_cast<const float4*>(kh + (key0 + key) * k_sl + col))
                                  : make_float4(0.f, 0.f, 0.f, 0.f);
    }
  }

  // Both halves, each a whole 16-byte unit, into the K stages at hi and lo.
  __device__ __forceinline__ void store_split(uint32_t hi, uint32_t lo) const {
#pragma unroll
    for (int u = 0; u < kUnits; ++u) {
      int key, col;
      place(u, key, col);
      uint32_t h[4], l[4];
      split_tf32(x[u].x, h[0], l[0]);
      split_tf32(x[u].y, h[1], l[1]);
      split_tf32(x[u].z, h[2], l[2]);
      split_tf32(x[u].w, h[3], l[3]);
      const uint32_t off = kmajor_offset<C::kBlockN>(key, col);
      asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(hi + off), "r"(h[0]), "r"(h[1]), "r"(h[2]),
                   "r"(h[3])
                   : "memory");
      asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(lo + off), "r"(l[0]), "r"(l[1]), "r"(l[2]),
                   "r"(l[3])
                   : "memory");
    }
  }
};

// The producer warpgroup: all 128 threads load, split and store K and V tile by tile, each tile
// loaded a half step before its stage is waited for (K_{j+1} while V_j waits, V_{j+1} while K_{j+1}
// waits), so the loads' trip overlaps the waits. Each thread fences its stores into the async proxy
// (wgmma reads the stages) before arriving on the stage's full barrier (128 arrivals).
template <class C>
__device__ __forceinline__ void produce_f32x3(const ArgsF32x3& a, typename C::Smem& s, const Item& w,
                                              int n_tiles) {
  constexpr int kBlockN = C::kBlockN;
  const int hk = w.h / a.group;
  const float* kh = a.k + w.b * a.k_sb + hk * a.k_sh;
  const float* vh = a.v + w.b * a.v_sb + hk * a.v_sh;
  KTile<C> kt;
  VTile<C> vt;
  kt.load(kh, a.k_sl, 0, a.S);
  vt.load(vh, a.v_sl, 0, a.S);
  for (int j = 0; j < n_tiles; ++j) {
    const int st = j % kStages;
    if (j >= kStages) ptx::mbar_wait(&s.k_empty[st], ((j / kStages) - 1) & 1);
    kt.store_split(ptx::smem_addr(s.k_hi[st]), ptx::smem_addr(s.k_lo[st]));
    ptx::fence_proxy_async_smem();
    ptx::mbar_arrive(&s.k_full[st]);
    if (j + 1 < n_tiles) kt.load(kh, a.k_sl, (j + 1) * kBlockN, a.S);
    const int vst = j % C::kVStages;
    if (j >= C::kVStages) ptx::mbar_wait(&s.v_empty[vst], ((j / C::kVStages) - 1) & 1);
    vt.store_split(ptx::smem_addr(s.v_hi[vst]), ptx::smem_addr(s.v_lo[vst]));
    ptx::fence_proxy_async_smem();
    ptx::mbar_arrive(&s.v_full[vst]);
    if (j + 1 < n_tiles) vt.load(vh, a.v_sl, (j + 1) * kBlockN, a.S);
  }
}

// This consumer warpgroup's 64 rows of Q: hi into the CTA's Q tile, lo into qlo as m64k8 RS A
// fragments ((row g, col t), (g + 8, t), (g, t + 4), (g + 8, t + 4) of each k-step's 8 columns).
// A negative scale runs on -Q (prepare()'s rule); rows past L are zeros. The stores are made
// visible to wgmma (async proxy) before any thread of the warpgroup issues one.
template <class C>
__device__ __forceinline__ void load_q_split(const ArgsF32x3& a, uint32_t q_tile, int row0, int cw, int h, int b,
                                             uint32_t (&qlo)[C::E / 8][4]) {
  const int tid = threadIdx.x % 128, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const float* qh = a.q + b * a.q_sb + h * a.q_sh;
  const float sign = a.negate_q ? -1.f : 1.f;
#pragma unroll
  for (int kk = 0; kk < C::E / 8; ++kk) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = cw * 64 + warp * 16 + g + 8 * (i & 1);  // row in the CTA's tile
      const int col = 8 * kk + t + 4 * (i >> 1);
      const int row = row0 + r;
      const float x = row < a.L ? sign * __ldg(qh + row * a.q_sl + col) : 0.f;
      uint32_t hi;
      split_tf32(x, hi, qlo[kk][i]);
      st_shared(q_tile + kmajor_offset<C::kBlockM>(r, col), hi);
    }
  }
  ptx::fence_proxy_async_smem();
  ptx::named_bar_sync(kWarpgroupBarrier + cw, 128);
}

// S = Q K^T in 3xTF32 for this warpgroup's 64 rows and one K stage, issued (not waited for).
template <class C>
__device__ __forceinline__ void issue_qk_3x(float (&sc)[C::kBlockN / 2], const uint32_t (&qlo)[C::E / 8][4],
                                            uint32_t q_base, uint32_t khi, uint32_t klo) {
  constexpr int kBlockM = C::kBlockM, kBlockN = C::kBlockN;
#pragma unroll
  for (int kk = 0; kk < C::E / 8; ++kk) {
    const uint32_t off = (kk % 4) * 32;  // k-step inside a 128-byte swizzled row
    const uint64_t dq = ptx::desc_kmajor_sw128(q_base + (kk / 4) * kBlockM * 128 + off);
    const uint32_t k_off = (kk / 4) * kBlockN * 128 + off;
    ptx::wgmma_rs<float, kBlockN, 0>(sc, qlo[kk], ptx::desc_kmajor_sw128(khi + k_off), kk > 0);
    ptx::wgmma_ss<float, kBlockN, 0>(sc, dq, ptx::desc_kmajor_sw128(klo + k_off), 1);
    ptx::wgmma_ss<float, kBlockN, 0>(sc, dq, ptx::desc_kmajor_sw128(khi + k_off), 1);
  }
  ptx::wgmma_commit();
}

// O += P V in 3xTF32 for one V^T stage pair, issued (not waited for).
template <class C>
__device__ __forceinline__ void issue_pv_3x(float (&o)[C::E / 2], const uint32_t (&phi)[C::kBlockN / 8][4],
                                            const uint32_t (&plo)[C::kBlockN / 8][4], uint32_t vhi, uint32_t vlo) {
#pragma unroll
  for (int kk = 0; kk < C::kBlockN / 8; ++kk) {
    const uint32_t off = (kk / 4) * C::E * 128 + (kk % 4) * 32;
    ptx::wgmma_rs<float, C::E, 0>(o, plo[kk], ptx::desc_kmajor_sw128(vhi + off), 1);
    ptx::wgmma_rs<float, C::E, 0>(o, phi[kk], ptx::desc_kmajor_sw128(vlo + off), 1);
    ptx::wgmma_rs<float, C::E, 0>(o, phi[kk], ptx::desc_kmajor_sw128(vhi + off), 1);
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
// O += P V, wait (attend()'s unpipelined loop with the 3x products).
template <class C, bool CAUSAL>
__device__ __forceinline__ void attend_3x(const ArgsF32x3& a, typename C::Smem& s, int row0, int cw, int n_tiles,
                                          const uint32_t (&qlo)[C::E / 8][4], float (&o)[C::E / 2], float (&m)[2],
                                          float (&l)[2]) {
  constexpr int kBlockN = C::kBlockN;
  const int tid = threadIdx.x % 128, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int first_row = row0 + cw * 64;
  const int row_g = first_row + warp * 16 + g;
  const uint32_t q_base = ptx::smem_addr(s.q) + cw * 64 * 128;
#pragma unroll
  for (int i = 0; i < C::E / 2; ++i) o[i] = 0.f;
  m[0] = m[1] = -INFINITY;
  l[0] = l[1] = 0.f;
  float sc[kBlockN / 2], alpha[2];
  uint32_t phi[kBlockN / 8][4], plo[kBlockN / 8][4];
  for (int j = 0; j < n_tiles; ++j) {
    const int st = j % kStages, vst = j % C::kVStages;
    ptx::mbar_wait(&s.k_full[st], (j / kStages) & 1);
    ptx::wgmma_fence();
    issue_qk_3x<C>(sc, qlo, q_base, ptx::smem_addr(s.k_hi[st]), ptx::smem_addr(s.k_lo[st]));
    ptx::wgmma_wait<0>();
    ptx::fence_operands(sc);
    if (lane == 0) ptx::mbar_arrive(&s.k_empty[st]);
    softmax_tile<C, CAUSAL>(sc, a, j, first_row, row_g, t, m, l, alpha);
    rescale<C::E>(o, alpha);
    pack_p_split<kBlockN>(sc, phi, plo);
    ptx::mbar_wait(&s.v_full[vst], (j / C::kVStages) & 1);
    ptx::wgmma_fence();
    issue_pv_3x<C>(o, phi, plo, ptx::smem_addr(s.v_hi[vst]), ptx::smem_addr(s.v_lo[vst]));
    ptx::wgmma_wait<0>();
    ptx::fence_operands(o);
    if (lane == 0) ptx::mbar_arrive(&s.v_empty[vst]);
  }
}

template <class C, bool CAUSAL>
__global__ void __launch_bounds__(C::kThreads, 1) v4_fwd_f32x3_kernel(const ArgsF32x3 a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  typename C::Smem& s = smem_layout<typename C::Smem>();

  const Item w = item_at<C, CAUSAL>(a, blockIdx.x);
  const int n_tiles = key_tiles<C, CAUSAL>(a, w.row0);

  if (threadIdx.x == 0) {
    for (int i = 0; i < C::kVStages; ++i) {
      if (i < kStages) ptx::mbar_init(&s.k_full[i], 128);
      if (i < kStages) ptx::mbar_init(&s.k_empty[i], 4 * C::kConsumerWarpgroups);
      ptx::mbar_init(&s.v_full[i], 128);
      ptx::mbar_init(&s.v_empty[i], 4 * C::kConsumerWarpgroups);
    }
    ptx::fence_mbarrier_init();
  }
  __syncthreads();

  const int wg = threadIdx.x / 128;
  if (wg == 0) {
    ptx::setmaxnreg_dec<C::kProducerRegs>();
    if (n_tiles > 0) produce_f32x3<C>(a, s, w, n_tiles);
  } else {
    ptx::setmaxnreg_inc<C::kConsumerRegs>();
    const int cw = wg - 1;
    uint32_t qlo[C::E / 8][4];
    float o[C::E / 2], m[2], l[2];
    if (n_tiles > 0) load_q_split<C>(a, ptx::smem_addr(s.q), w.row0, cw, w.h, w.b, qlo);
    attend_3x<C, CAUSAL>(a, s, w.row0, cw, n_tiles, qlo, o, m, l);
    store_o_regs<float, C>(a, o, m, l, w.row0, cw, w.h, w.b);
  }
#else
  __trap();  // built without sm_90a: the host never launches this
#endif
}

}  // namespace flash_attn_ext::cuda::v4
