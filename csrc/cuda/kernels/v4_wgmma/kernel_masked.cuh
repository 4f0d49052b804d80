// v4_wgmma with a dense bool mask (any broadcast form), prepared by mask_bits.cuh's pre-pass.
//
// What changes from v4_fwd_kernel (kernel.cuh, whose unmasked instantiations stay as they are):
// - the tiles a CTA visits come from its query block's list: tiles no row sees are neither
//   loaded nor computed (the producer walks the same list), tiles every row sees run exactly the
//   unmasked step (scale only), the others ("partial") load two 32-bit words per thread, issued
//   before the step's barrier waits and wgmmas so their latency hides under Q K^T, and replace
//   hidden scores with -inf by a select before the online softmax;
// - causal visibility and the key tail are folded into the bits and classes, so the kernel has
//   no causal template axis (the pre-pass takes causal at run time; the grid still runs the
//   longest query blocks first under causal);
// - a V row of a key that no row of the CTA sees is zeroed in shared memory before P V (each
//   consumer warpgroup zeroes it itself, then fence.proxy.async + a warpgroup barrier), so
//   NaN/Inf stored at keys the mask hides from the whole block never reaches O as 0 * NaN;
//   keys some rows of the block see and others do not still do (the tensor-core tile limit
//   documented for v3/v4).
// Tile 128 x 128, overlapped loop with pingpong (the unmasked default's loop; 176-key tiles
// would need 44 bits per thread and row, not a whole word).
#pragma once

#include "kernel.cuh"
#include "mask_bits.cuh"

namespace flash_attn_ext::cuda::v4 {

// Named barrier of consumer warpgroup cw's V zeroing (1 .. 3 are the pingpong turns; the
// one-item kernel has no epilogue barrier).
constexpr int kMaskZeroBarrier = 4;

// K and V tiles list[0 .. n_tiles) (entries as in mask_bits.cuh) of one (b, kv head) through
// the ring: produce_kv with the tile index taken from the list.
template <class C>
__device__ __forceinline__ void produce_kv_listed(const CUtensorMap* tk, const CUtensorMap* tv,
                                                  typename C::Smem& s, int hk, int b, int n_tiles,
                                                  const uint32_t* list) {
  for (int j = 0; j < n_tiles; ++j) {
    const int st = j % kStages;
    const int key_tile = static_cast<int>(__ldg(list + j) >> 3);
    const uint32_t prev = ((j / kStages) - 1) & 1;
    if (j >= kStages) ptx::mbar_wait(&s.k_empty[st], prev);
    load_ring_tile<C>(tk, s.k, s.k_full, st, key_tile, hk, b);
    if (j >= kStages) ptx::mbar_wait(&s.v_empty[st], prev);
    load_ring_tile<C>(tv, s.v, s.v_full, st, key_tile, hk, b);
  }
}

__device__ __forceinline__ void st_shared_zero16(uint32_t addr) {
  asm volatile("st.shared.v4.b32 [%0], {%1, %1, %1, %1};\n" ::"r"(addr), "r"(0) : "memory");
}

// Zeroes the rows of the V tile at v_smem whose keys hid marks (word t, bit 2 jb + e = key
// 8 jb + 2 t + e), whole 128-byte rows of every 64-wide E chunk (the swizzle permutes 16-byte
// units only within a row), then hands the writes to the async proxy and syncs the warpgroup,
// so its next wgmma reads zeros. The other consumer warpgroup writes the same zeros into the
// same rows at about the same time: whichever write a wgmma sees, it reads 0.
template <class C>
__device__ __forceinline__ void zero_hidden_v(uint32_t v_smem, uint4 hid, int cw) {
  constexpr int kUnits = C::kBlockN * (C::E / kChunk) * 8;  // 16-byte units of the tile
  const int tid = threadIdx.x % 128;
#pragma unroll 4
  for (int u = tid; u < kUnits; u += 128) {
    const int key = (u / 8) % C::kBlockN;
    const int t = (key % 8) / 2, bit = 2 * (key / 8) + (key & 1);
    const uint32_t w = t == 0 ? hid.x : t == 1 ? hid.y : t == 2 ? hid.z : hid.w;
    if ((w >> bit) & 1u) st_shared_zero16(v_smem + u * 16);
  }
  ptx::fence_proxy_async_smem();
  ptx::named_bar_sync(kMaskZeroBarrier + cw, 128);
}

// attend()'s overlapped loop (OVERLAP = true) over the listed tiles of one query block.
// bits_row: this thread's word of its first row in the block's tile 0 (the word of tile nt is
// nt * 512 further, the row 8 below 32 further); hid: the block's per-tile hidden keys.
template <typename T, class C, bool PINGPONG>
__device__ __forceinline__ void attend_masked(const Args& a, typename C::Smem& s, int cw, int n_tiles,
                                              const uint32_t* list, const uint32_t* bits_row, const uint4* hid,
                                              float (&o)[C::E / 2], float (&m)[2], float (&l)[2]) {
  constexpr int E = C::E, kBlockN = C::kBlockN;
  static_assert(kBlockN == kMaskBN && C::kBlockM == kMaskBM, "v4 masked: the pre-pass's tile shape");
  constexpr int64_t kTileWords = kMaskBM * kMaskWords;
  const int lane = threadIdx.x % 32;
  const Turns<PINGPONG, C::kConsumerWarpgroups> turns{cw};

#pragma unroll
  for (int i = 0; i < E / 2; ++i) o[i] = 0.f;
  m[0] = m[1] = -INFINITY;
  l[0] = l[1] = 0.f;
  float alpha[2];
  float sc[kBlockN / 2];
  uint32_t p[kBlockN / 16][4];

  turns.open_first(n_tiles);
  if (n_tiles == 0) return;
  const uint32_t q_base = ptx::smem_addr(s.q) + cw * 64 * 128;
  auto stage = [&](int j) { return j % kStages; };
  auto k_base = [&](int j) { return ptx::smem_addr(s.k[stage(j)]); };
  auto v_base = [&](int j) { return ptx::smem_addr(s.v[stage(j)]); };
  auto phase = [&](int j) { return (j / kStages) & 1; };
  auto partial = [](uint32_t e) { return (e & 3u) == kTilePartial; };
  uint32_t w0 = 0, w1 = 0;  // this thread's visibility words (rows g, g + 8) of the next S tile
  auto load_words = [&](uint32_t e) {
    const uint32_t* w = bits_row + static_cast<int64_t>(e >> 3) * kTileWords;
    w0 = __ldg(w);
    w1 = __ldg(w + 8 * kMaskWords);
  };
  auto zero_v = [&](uint32_t e, int j) {
    if (e & 4u) zero_hidden_v<C>(v_base(j), __ldg(hid + (e >> 3)), cw);
  };

  uint32_t e_cur = __ldg(list);  // tile 0
  if (partial(e_cur)) load_words(e_cur);
  uint32_t e_next = n_tiles > 1 ? __ldg(list + 1) : 0u;
  ptx::mbar_wait(&s.q_full, 0);
  if (a.negate_q) negate_q_rows<C>(q_base, cw);
  ptx::mbar_wait(&s.k_full[stage(0)], phase(0));
  turns.wait();
  ptx::wgmma_fence();
  issue_qk<T, C>(sc, q_base, k_base(0));
  turns.pass(false);  // the last turn is always the final PV below
  ptx::wgmma_wait<0>();
  ptx::fence_operands(sc);
  if (lane == 0) ptx::mbar_arrive(&s.k_empty[stage(0)]);
  if (partial(e_cur)) hide_by_bits<kBlockN>(sc, w0, w1);
  softmax_step<C>(sc, m, l, alpha, a.scale_log2);  // O is 0: no rescale
  pack_p<T, kBlockN>(sc, p);

  // Overlapped step j (0 <= j < n - 1): PV_j (entry e_j), and S_{j+1} with its softmax.
  auto step = [&](auto mask_tag, int j, uint32_t e_j) {
    constexpr bool kMask = decltype(mask_tag)::value;
    ptx::mbar_wait(&s.k_full[stage(j + 1)], phase(j + 1));
    ptx::mbar_wait(&s.v_full[stage(j)], phase(j));
    zero_v(e_j, j);
    turns.wait();
    ptx::wgmma_fence();
    issue_qk<T, C>(sc, q_base, k_base(j + 1));
    rescale_o<C>(o, alpha);
    ptx::wgmma_fence();
    issue_pv<T, C>(o, p, v_base(j));
    turns.pass(false);
    ptx::wgmma_wait<1>();  // groups retire in order: S_{j+1} is done, PV_j may still run
    ptx::fence_operands(sc);
    if (lane == 0) ptx::mbar_arrive(&s.k_empty[stage(j + 1)]);
    if constexpr (kMask) hide_by_bits<kBlockN>(sc, w0, w1);
    softmax_step<C>(sc, m, l, alpha, a.scale_log2);
    end_block(a.L < 0);  // keeps wait_group 0 below the softmax
    ptx::wgmma_wait<0>();
    ptx::fence_operands(o);
    if (lane == 0) ptx::mbar_arrive(&s.v_empty[stage(j)]);
    pack_p<T, kBlockN>(sc, p);
  };
  for (int j = 0; j + 1 < n_tiles; ++j) {
    const uint32_t e1 = e_next;  // tile j + 1
    e_next = j + 2 < n_tiles ? __ldg(list + j + 2) : 0u;
    if (partial(e1)) {
      load_words(e1);  // first used after S_{j+1} retires
      step(std::true_type{}, j, e_cur);
    } else {
      step(std::false_type{}, j, e_cur);
    }
    e_cur = e1;
  }
  const int j = n_tiles - 1;  // the last tile only runs PV
  ptx::mbar_wait(&s.v_full[stage(j)], phase(j));
  zero_v(e_cur, j);
  turns.wait();
  rescale_o<C>(o, alpha);
  ptx::wgmma_fence();
  issue_pv<T, C>(o, p, v_base(j));
  turns.pass(true);
  ptx::wgmma_wait<0>();
  ptx::fence_operands(o);
  if (lane == 0) ptx::mbar_arrive(&s.v_empty[stage(j)]);
}

// One CTA per (query block, b, h), as v4_fwd_kernel; the block's tile list, count, bits and
// hidden keys come from its mask slice (mb, mh) = (b or 0, h or 0).
template <typename T, class C, bool PINGPONG>
__global__ void __launch_bounds__(C::kThreads, C::kCtasPerSm)
    v4_fwd_masked_kernel(const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tk,
                         const __grid_constant__ CUtensorMap tv, const Args a, const MaskArgs mk) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  typename C::Smem& s = smem_layout<typename C::Smem>();

  const int bh = blockIdx.x / a.num_m;
  int m_blk = blockIdx.x % a.num_m;
  if (mk.reverse) m_blk = a.num_m - 1 - m_blk;  // causal: longest rows first
  const int b = bh / a.H, h = bh % a.H, hk = h / a.group;
  const int row0 = m_blk * C::kBlockM;
  const int64_t trow = (static_cast<int64_t>(mk.MB > 1 ? b : 0) * mk.MH + (mk.MH > 1 ? h : 0)) * a.num_m + m_blk;
  const uint32_t* list = mk.list + trow * mk.NT;
  const int n_tiles = __ldg(mk.count + trow);

  if (threadIdx.x == 0) {
    ptx::mbar_init(&s.q_full, 1);
    init_barriers_kv<C>(s.k_full, s.v_full, s.k_empty, s.v_empty);
    ptx::fence_mbarrier_init();
  }
  __syncthreads();

  const int wg = ptx::warpgroup_index();
  if (wg == 0) {
    ptx::setmaxnreg_dec<C::kProducerRegs>();
    if (threadIdx.x == 0 && n_tiles > 0) {
      ptx::tma_prefetch_desc(&tq);
      ptx::tma_prefetch_desc(&tk);
      ptx::tma_prefetch_desc(&tv);
      load_q<C>(&tq, ptx::smem_addr(s.q), &s.q_full, row0, h, b);
      produce_kv_listed<C>(&tk, &tv, s, hk, b, n_tiles, list);
    }
  } else {
    ptx::setmaxnreg_inc<C::kConsumerRegs>();
    const int cw = wg - 1;
    const int tid = threadIdx.x % 128, warp = tid / 32, lane = tid % 32;
    const int rl = cw * 64 + warp * 16 + lane / 4;  // this thread's first row in the block
    const uint32_t* bits_row =
        mk.bits + trow * mk.NT * (kMaskBM * kMaskWords) + rl * kMaskWords + lane % 4;
    float o[C::E / 2], m[2], l[2];
    attend_masked<T, C, PINGPONG>(a, s, cw, n_tiles, list, bits_row, mk.hid + trow * mk.NT, o, m, l);
    store_o_regs<T, C>(a, o, m, l, row0, cw, h, b);
  }
#else
  __trap();  // built without sm_90a: the host never launches this
#endif
}

}  // namespace flash_attn_ext::cuda::v4
