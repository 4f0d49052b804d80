// v4_wgmma for float32 inputs on TF32 tensor cores (float32_precision='tf32').
//
// What changes from the 16-bit v4 kernel (kernel.cuh), and why:
// - wgmma reads float32 operands as TF32, m64nNk8, and only K-major: Q and K are K-major as
//   stored (E contiguous), so Q K^T runs as before with k8 steps (same 32 bytes per step, so the
//   same descriptors); V is not (its K dimension, the keys, is the strided one), and TMA cannot
//   transpose. The producer warpgroup therefore reads V with ordinary 16-byte loads and stores
//   it transposed into the stage, one key per 4-byte slot; all four producer warps do this,
//   while one thread still issues the TMA copies of Q and K.
// - The m64k8 TF32 A fragment holds columns t and t + 4 where the S accumulator holds 2t and
//   2t + 1; rather than shuffling P between lanes, the transposed stage stores key 2t in k-slot
//   t and key 2t + 1 in k-slot t + 4 of every 8 (pack_p in kernel.cuh).
// - Every operand is rounded to TF32 to nearest before the tensor cores see it (they would drop
//   the low 13 bits: 3x the error): Q and K by the TMA (maps of type TFLOAT32), V by the
//   producer as it transposes, P by cvt.rna in pack_p.
// - Tiles: 128 x 64, three V^T stages (CfgF32 in config.h: float32 doubles every tile's bytes).
// The consumer warpgroups run the same attend() loop as the 16-bit kernel, in its unpipelined form
// (launch_template.cuh's run_v4_f32 says why).
//
// What it measured (H200, E = 128, N = 4096, B = 4, H = 16, TF32; benchmarks/NOTES_v4.md, float32
// steps): first version (two V stages, overlapped loop + pingpong) 111 TFLOP/s with 3x v3's
// error (the tensor cores truncate raw float32); Q/K maps of TMA type TFLOAT32 and V rounded in the
// transpose: v3's error, 121; a third V stage and each V tile loaded before waiting for its stage:
// 199; the unpipelined loop: 210 (4.6x SDPA's efficient backend on float32, 2.8x v3 in TF32).
#pragma once

#include "kernel.cuh"

namespace flash_attn_ext::cuda::v4 {

// Byte offset of V(key, n) in a V^T stage: chunks of 32 keys, each E rows (one per value column
// n) of 128 bytes with the 128-byte swizzle (16-byte unit u of row n at u ^ (n % 8)), the layout
// of a K-major wgmma operand with N = E. Inside each 8 keys, key i sits in slot i / 2 + 4 (i % 2):
// the order pack_p's P fragments expect.
template <int E>
__device__ __forceinline__ uint32_t vt_offset(int key, int n) {
  const int i = key % 8;
  const int unit = 2 * ((key % 32) / 8) + (i & 1);
  return (key / 32) * (E * 128) + n * 128 + ((unit ^ (n % 8)) * 16) + (i >> 1) * 4;
}

// Rows [key0, key0 + BN) of one (b, kv head) into x, unit u the four values at Tile::place(u) (16-byte
// loads); rows at or past key_end as zeros (as the TMA fills K), and with COL_BOUND columns at or past
// col_end too (a padded head dim, a multiple of 4: the 3xF16 kernel). The float32 kernels' producers load
// their tiles this way: V here, K too in the 3xTF32 kernel (kernel_f32x3.cuh), K and V in the 3xF16 one.
template <class Tile, bool COL_BOUND = false, int N>
__device__ __forceinline__ void load_tile_rows(float4 (&x)[N], const float* rows, int64_t row_stride, int key0,
                                               int key_end, int col_end = 0) {
#pragma unroll
  for (int u = 0; u < N; ++u) {
    int key, col;
    Tile::place(u, key, col);
    x[u] = key0 + key < key_end && (!COL_BOUND || col < col_end)
               ? __ldg(reinterpret_cast<const float4*>(rows + (key0 + key) * row_stride + col))
               : make_float4(0.f, 0.f, 0.f, 0.f);
  }
}

// A V tile in flight: this thread's share, E / 8 float4 (one per work unit of its warp). Work unit =
// one warp instruction: 8 keys (lane % 8) x 16 columns (4 per lane); each key's 64 bytes are one
// coalesced pair of sectors on load, and a warp's 32 stores of one element fall on 16 banks
// (2-way), not 2.
template <class C>
struct VTile {
  static constexpr int kKeyBlocks = C::kBlockN / 8;
  static constexpr int kUnits = kKeyBlocks * (C::E / 16) / 4;  // per warp
  float4 x[kUnits];

  __device__ __forceinline__ static void place(int u, int& key, int& col) {
    const int tid = threadIdx.x % 128, warp = tid / 32, lane = tid % 32;
    const int unit = u * 4 + warp;
    key = (unit % kKeyBlocks) * 8 + lane % 8;
    col = (unit / kKeyBlocks) * 16 + (lane / 8) * 4;
  }

  __device__ __forceinline__ void load(const float* vh, int64_t v_sl, int key0, int key_end) {
    load_tile_rows<VTile>(x, vh, v_sl, key0, key_end);
  }

  // Into the V^T stage at dst, rounded to TF32 (to nearest; the tensor cores would drop the bits).
  __device__ __forceinline__ void store(uint32_t dst) const {
#pragma unroll
    for (int u = 0; u < kUnits; ++u) {
      int key, col;
      place(u, key, col);
      ptx::st_shared(dst + vt_offset<C::E>(key, col + 0), to_tf32(x[u].x));
      ptx::st_shared(dst + vt_offset<C::E>(key, col + 1), to_tf32(x[u].y));
      ptx::st_shared(dst + vt_offset<C::E>(key, col + 2), to_tf32(x[u].z));
      ptx::st_shared(dst + vt_offset<C::E>(key, col + 3), to_tf32(x[u].w));
    }
  }
};

// The producer warpgroup: thread 0 issues Q and K (one tile ahead of V), all 128 threads
// transpose V tile by tile, loading each tile before waiting for a free stage, so the loads' trip
// overlaps the wait. Each thread fences its stores into the async proxy (wgmma reads the stage)
// before arriving on v_full, which completes after all 128 arrivals.
template <class C>
__device__ __forceinline__ void produce_f32(const CUtensorMap* tq, const CUtensorMap* tk, const ArgsF32& a,
                                            typename C::Smem& s, const Item& w, int n_tiles) {
  const int tid = threadIdx.x % 128;
  const int hk = w.h / a.group;
  if (tid == 0) {
    ptx::tma_prefetch_desc(tq);
    ptx::tma_prefetch_desc(tk);
    load_q<C>(tq, ptx::smem_addr(s.q), &s.q_full, w.row0, w.h, w.b);
    load_ring_tile<C>(tk, s.k, s.k_full, 0, 0, hk, w.b);
  }
  const float* vh = a.v + w.b * a.v_sb + hk * a.v_sh;
  for (int j = 0; j < n_tiles; ++j) {
    if (tid == 0 && j + 1 < n_tiles) {  // K_{j+1} into its stage once the consumers released it
      const int kst = (j + 1) % kStages;
      if (j + 1 >= kStages) ptx::mbar_wait(&s.k_empty[kst], (((j + 1) / kStages) - 1) & 1);
      load_ring_tile<C>(tk, s.k, s.k_full, kst, j + 1, hk, w.b);
    }
    VTile<C> tile;
    tile.load(vh, a.v_sl, j * C::kBlockN, a.S);
    const int st = j % C::kVStages;
    if (j >= C::kVStages) ptx::mbar_wait(&s.v_empty[st], ((j / C::kVStages) - 1) & 1);
    tile.store(ptx::smem_addr(s.v[st]));
    ptx::fence_proxy_async_smem();
    ptx::mbar_arrive(&s.v_full[st]);
  }
}

template <class C, bool CAUSAL, bool OVERLAP, bool PINGPONG>
__global__ void __launch_bounds__(C::kThreads, C::kCtasPerSm)
    v4_fwd_f32_kernel(const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tk,
                      const ArgsF32 a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  typename C::Smem& s = smem_layout<typename C::Smem>();

  const Item w = item_at<C, CAUSAL>(a, blockIdx.x);
  const int n_tiles = key_tiles<C, CAUSAL>(a, w.row0);

  if (threadIdx.x == 0) {
    ptx::mbar_init(&s.q_full, 1);
    init_barriers_kv<C>(s.k_full, s.v_full, s.k_empty, s.v_empty, 128);
    ptx::fence_mbarrier_init();
  }
  __syncthreads();

  const int wg = ptx::warpgroup_index();
  if (wg == 0) {
    ptx::setmaxnreg_dec<C::kProducerRegs>();
    if (n_tiles > 0) produce_f32<C>(&tq, &tk, a, s, w, n_tiles);
  } else {
    ptx::setmaxnreg_inc<C::kConsumerRegs>();
    const int cw = wg - 1;
    float o[C::E / 2], m[2], l[2];
    const Ring r{0, ptx::smem_addr(s.q), ptx::smem_addr(&s.q_full), 0, 0};
    attend<float, C, CAUSAL, OVERLAP, PINGPONG>(a, s, w.row0, cw, n_tiles, r, o, m, l);
    store_o_regs<float, C>(a, o, m, l, w.row0, cw, w.h, w.b);
  }
#else
  __trap();  // built without sm_90a: the host never launches this
#endif
}

}  // namespace flash_attn_ext::cuda::v4
