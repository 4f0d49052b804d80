// v4_fwd_persistent_xitem_kernel: the persistent kernel with one consumer pipeline across work
// items (FLASH_ATTN_EXT_V4_XITEM=1; NOTES_v4.md, step 8).
//
// What changes from v4_fwd_persistent_kernel (kernel.cuh, whose instantiations stay as they are):
// there every item starts with an exposed prologue (wait for Q, S_0 = Q K_0^T and its softmax
// with nothing else on the tensor cores) and ends with a last P V that nothing overlaps. Here a
// consumer warpgroup runs all its items as one chain of overlapped steps: the last step of an
// item issues the next item's S_0 together with the item's last P V ("cross step"), exactly as a
// step inside an item issues S_{j+1} with PV_j, and runs the next item's first softmax while that
// P V is on the tensor cores. Then the finished item's epilogue (O normalised into the staging
// tile, TMA store), then the next item's steps, starting with its PV_0.
//
// Registers: the cross step holds what any overlapped step holds (O, S of the next tile, P of
// this one) plus the next item's row max and sums (4 floats) while the finished item's are
// still needed for its epilogue; through the epilogue O and the next item's P_0 are live.
// Barriers: the producer is unchanged (it already runs ahead across items). The consumers wait
// for the next item's Q and K_0 before the cross step's P V instead of after it, and release
// their Q buffer when the cross step's S_0 retires (every Q K^T of the finished item has retired
// by then). Pingpong turns run over the whole chain: WG W-1 opens WG 0's first turn once per CTA
// and does not pass on its very last turn; every warpgroup visits the same items and tiles, so
// the turn counts agree. scripts/v4_persistent_model.py models this order (--xitem), turns
// included.
// Items with no visible key (causal): no Q, no tiles, no turns; their rows (O = 0, LSE = -inf)
// are stored after the epilogue of the busy item before them, or first when none precedes them.
#pragma once

#include "kernel.cuh"

namespace flash_attn_ext::cuda::v4 {

// One consumer warpgroup's chain over the CTA's items (cta_item's sequence, the producer's). Only the
// overlapped loop with pingpong: the chain is that loop continued across items. Items are counted by
// k, the CTA's k-th item being item_at(cta_item(k)).
template <typename T, class C, bool CAUSAL>
__device__ __forceinline__ void consume_chain(const Args& a, typename C::PSmem& s, int cw, const CUtensorMap* to) {
  constexpr int E = C::E, kBlockN = C::kBlockN;
  const int tid = threadIdx.x % 128, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const Turns<true, C::kConsumerWarpgroups> turns{cw};
  const uint32_t o_tile = ptx::smem_addr(s.o);
  const bool skip_max = C::kSkipMax && a.skip_max;  // after each item's first tile (kernel.cuh, softmax_after_qk)

  auto done = [&](int k) { return cta_item<CAUSAL>(a, k) >= a.num_items; };
  auto item = [&](int k) { return item_at<C, CAUSAL>(a, static_cast<int>(cta_item<CAUSAL>(a, k))); };
  auto next_busy = [&](int k) {  // the first of this CTA's items from the k-th on with a key tile, or past the end
    while (!done(k) && key_tiles<C, CAUSAL>(a, item(k).row0) == 0) ++k;
    return k;
  };
  auto stage = [](uint32_t g) { return static_cast<int>(g % kStages); };
  auto phase = [](uint32_t g) { return (g / kStages) & 1; };
  auto k_base = [&](uint32_t g) { return ptx::smem_addr(s.k[stage(g)]); };
  auto v_base = [&](uint32_t g) { return ptx::smem_addr(s.v[stage(g)]); };
  auto q_slice = [&](uint32_t q) { return ptx::smem_addr(s.q[q % kQStages]) + cw * 64 * 128; };
  auto q_full = [&](uint32_t q) { return ptx::smem_addr(&s.q_full[q % kQStages]); };
  auto q_parity = [](uint32_t q) { return (q / kQStages) & 1; };

  float o[E / 2], m[2], l[2], alpha[2];
  float sc[kBlockN / 2];
  uint32_t p[kBlockN / 16][4];
#pragma unroll
  for (int i = 0; i < E / 2; ++i) o[i] = 0.f;

  // Rows of keyless items: with m = -inf and l = 0 store_o_tma writes O = 0 and LSE = -inf. O is
  // all zeros wherever this runs (before the first busy item, after an epilogue).
  const float m_none[2] = {-INFINITY, -INFINITY}, l_none[2] = {0.f, 0.f};
  auto store_keyless = [&](int from, int end) {
    for (int k = from; k < end; ++k) {
      const Item w = item(k);
      store_o_tma<T, C>(a, o, m_none, l_none, w.row0, cw, w.h, w.b, o_tile, to);
    }
  };

  int cur = next_busy(0);
  store_keyless(0, cur);
  if (done(cur)) return;

  uint32_t g0 = 0, qc = 0;  // K/V tiles and Q buffers this CTA used before item `cur`

  // The CTA's only exposed prologue: S_0 of its first busy item.
  {
    const int first_row = item(cur).row0 + cw * 64;
    turns.open_first(1);
    ptx::mbar_wait(q_full(qc), q_parity(qc));
    if (a.negate_q) negate_q_rows<C>(q_slice(qc), cw);
    ptx::mbar_wait(&s.k_full[stage(g0)], phase(g0));
    turns.wait();
    ptx::wgmma_fence();
    issue_qk<T, C>(sc, opaque(q_slice(qc)), k_base(g0));
    turns.pass(false);
    ptx::wgmma_wait<0>();
    ptx::fence_operands(sc);
    if (lane == 0) ptx::mbar_arrive(&s.k_empty[stage(g0)]);
    m[0] = m[1] = -INFINITY;
    l[0] = l[1] = 0.f;
    softmax_tile<C, CAUSAL>(sc, a, 0, first_row, first_row + warp * 16 + g, t, m, l, alpha);
    pack_p<T, kBlockN>(sc, p);
  }

  while (true) {
    // Item `cur`: S_0 is done and packed in p; O is zero.
    const Item w = item(cur);
    const int n = key_tiles<C, CAUSAL>(a, w.row0);
    const int first_row = w.row0 + cw * 64, row_g = first_row + warp * 16 + g;
    const int n_plain = plain_tiles<C, CAUSAL>(a, first_row, n);
    const uint32_t q_item = q_slice(qc);

    // Overlapped step j (0 <= j < n - 1) inside the item, as in attend().
    auto step = [&](auto mask_tag, int j) {
      constexpr bool kMask = decltype(mask_tag)::value;
      const uint32_t gk = g0 + j + 1, gv = g0 + j;
      ptx::mbar_wait(&s.k_full[stage(gk)], phase(gk));
      ptx::mbar_wait(&s.v_full[stage(gv)], phase(gv));
      turns.wait();
      ptx::wgmma_fence();
      issue_qk<T, C>(sc, opaque(q_item), k_base(gk));
      rescale_o<C>(o, alpha);
      ptx::wgmma_fence();
      issue_pv<T, C>(o, p, v_base(gv));
      turns.pass(false);
      ptx::wgmma_wait<1>();
      ptx::fence_operands(sc);
      softmax_after_qk<T, C, CAUSAL>(skip_max, sc, o, a, j + 1, kMask, row_g, t, cw, opaque(q_item), k_base(gk), m, l,
                                     alpha, [&] {
                                       if (lane == 0) ptx::mbar_arrive(&s.k_empty[stage(gk)]);
                                     });
      end_block(a.L < 0);  // keeps wait_group 0 below the softmax
      ptx::wgmma_wait<0>();
      ptx::fence_operands(o);
      if (lane == 0) ptx::mbar_arrive(&s.v_empty[stage(gv)]);
      pack_p<T, kBlockN>(sc, p);
    };
    for (int j = 0; j + 1 < n; ++j) {
      if (j + 1 < n_plain)
        step(std::false_type{}, j);
      else
        step(std::true_type{}, j);
    }

    const uint32_t gl = g0 + n - 1;  // the item's last tile: only its P V is left
    const int nx = next_busy(cur + 1);
    if (done(nx)) {
      ptx::mbar_wait(&s.v_full[stage(gl)], phase(gl));
      turns.wait();
      rescale_o<C>(o, alpha);
      ptx::wgmma_fence();
      issue_pv<T, C>(o, p, v_base(gl));
      turns.pass(true);
      ptx::wgmma_wait<0>();
      ptx::fence_operands(o);
      if (lane == 0) {
        ptx::mbar_arrive(&s.v_empty[stage(gl)]);
        ptx::mbar_arrive(&s.q_empty[qc % kQStages]);
      }
      store_o_tma<T, C>(a, o, m, l, w.row0, cw, w.h, w.b, o_tile, to);
#pragma unroll
      for (int i = 0; i < E / 2; ++i) o[i] = 0.f;
      store_keyless(cur + 1, nx);
      return;
    }

    // Cross step: P V of this item's last tile with S_0 of item nx (K/V tile gn, Q use qn).
    const int row0_n = item(nx).row0, first_row_n = row0_n + cw * 64;
    const uint32_t gn = g0 + n, qn = qc + 1;
    float m_n[2] = {-INFINITY, -INFINITY}, l_n[2] = {0.f, 0.f};
    auto cross = [&](auto mask_tag) {
      constexpr bool kMask = decltype(mask_tag)::value;
      ptx::mbar_wait(q_full(qn), q_parity(qn));
      if (a.negate_q) negate_q_rows<C>(q_slice(qn), cw);
      ptx::mbar_wait(&s.k_full[stage(gn)], phase(gn));
      ptx::mbar_wait(&s.v_full[stage(gl)], phase(gl));
      turns.wait();
      ptx::wgmma_fence();
      issue_qk<T, C>(sc, opaque(q_slice(qn)), k_base(gn));
      rescale_o<C>(o, alpha);
      ptx::wgmma_fence();
      issue_pv<T, C>(o, p, v_base(gl));
      turns.pass(false);
      ptx::wgmma_wait<1>();  // S_0 of nx has retired, and with it every Q K^T of this item
      ptx::fence_operands(sc);
      if (lane == 0) {
        ptx::mbar_arrive(&s.k_empty[stage(gn)]);
        ptx::mbar_arrive(&s.q_empty[qc % kQStages]);
      }
      if constexpr (kMask) hide_scores<kBlockN, CAUSAL>(sc, first_row_n + warp * 16 + g, 0, t, a.S, a.causal_offset);
      softmax_step<C>(sc, m_n, l_n, alpha, a.scale_log2);
      // Pinned by the sums, not by a.L < 0 as in the steps: on 192 x 128 (E = 64, 160 registers)
      // ptxas moved every exp2 of this step past that branch and below wait_group 0. The sums
      // depend on every exp2 and are never negative, so the branch is never taken either.
      end_block(l_n[0] < 0.f || l_n[1] < 0.f);
      ptx::wgmma_wait<0>();
      ptx::fence_operands(o);
      if (lane == 0) ptx::mbar_arrive(&s.v_empty[stage(gl)]);
      pack_p<T, kBlockN>(sc, p);
    };
    // Key tile 0 of nx needs the mask exactly when nx has no plain tile.
    if (plain_tiles<C, CAUSAL>(a, first_row_n, key_tiles<C, CAUSAL>(a, row0_n)) > 0)
      cross(std::false_type{});
    else
      cross(std::true_type{});

    store_o_tma<T, C>(a, o, m, l, w.row0, cw, w.h, w.b, o_tile, to);
    // O restarts from zero (not from 0 * alpha: an Inf in O would turn into NaN).
#pragma unroll
    for (int i = 0; i < E / 2; ++i) o[i] = 0.f;
    store_keyless(cur + 1, nx);
    m[0] = m_n[0];
    m[1] = m_n[1];
    l[0] = l_n[0];
    l[1] = l_n[1];
    g0 = gn;
    qc = qn;
    cur = nx;
  }
}

// The persistent kernel of kernel.cuh with consume_chain as its consumers; same grid, same
// shared-memory layout, same producer.
template <typename T, class C, bool CAUSAL>
__global__ void __launch_bounds__(C::kThreads, C::kCtasPerSm)
    v4_fwd_persistent_xitem_kernel(const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tk,
                                   const __grid_constant__ CUtensorMap tv, const __grid_constant__ CUtensorMap to,
                                   const Args a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  static_assert(C::kPersistentFits, "v4: persistent layout exceeds shared memory");
  static_assert(C::kQBuffers == kQStages && C::kStageO, "v4: the cross-item chain needs two Q buffers and O staging");
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
    if (threadIdx.x % 128 == 0) ptx::tma_prefetch_desc(&to);
    consume_chain<T, C, CAUSAL>(a, s, wg - 1, &to);
    // The CTA's shared memory must outlive the last store's reads of the staging tile.
    if (threadIdx.x % 128 == 0) ptx::tma_store_wait<0>();
  }
#else
  __trap();  // built without sm_90a: the host never launches this
#endif
}

}  // namespace flash_attn_ext::cuda::v4
