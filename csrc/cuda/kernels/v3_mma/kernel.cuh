// v3: tensor-core forward (mma.sync), FlashAttention-2's work split.
//
// Changed from v2 (warp-cooperative, CUDA-core FMAs): the two products run on tensor cores
// (m16n8k16 for fp16/bf16, m16n8k8 TF32 or 3xTF32 for float32); each warp owns 16 query
// rows whose scores S, probabilities P and output O stay in registers for the whole key
// loop (no inter-warp reduction); K/V tiles stream through a two-stage cp.async pipeline
// in padded shared memory; the softmax scale is folded into one exp2 FFMA; causal tiles
// above the diagonal are never loaded and only tiles that cross it are masked; a dense
// mask is classified per warp tile (all visible / none / partial) by two votes.
// Bought (H200, bf16, E=128, N=4096, B*N=16k): 223 TFLOP/s, 1.35x SDPA's efficient backend but
// only 0.65x its flash backend (FA2); ladder and misses in benchmarks/NOTES_v3.md.
// This is the 16-rows-per-warp rung (FLASH_ATTN_EXT_V3_ROWS=16, and every float32 mode and head
// dim above 128); kernel_rows32.cuh is the next one, 32 rows per warp (step 3).
// Above E = 128 (step 11): 64-row CTAs with one K and one V stage, V_j loading under Q*K_j^T and
// K_{j+1} under tile j's softmax and P*V, so two CTAs share an SM (FA2's tile there): +4-9% at
// E = 160, 192 and 256 against one CTA of 8 warps with two stages.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "../../ptx/cp_async.cuh"
#include "../causal_order.h"
#include "args.h"
#include "masking.cuh"
#include "softmax.cuh"
#include "tile_copy.cuh"
#include "tile_sizes.h"
#include "warp_mma16.cuh"
#include "warp_mma16r.cuh"
#include "warp_mma32.cuh"

namespace flash_attn_ext::cuda::v3 {

template <Mode M, int HD, int ROWS = 16>
struct KernelConfig {
  using Tiles = TileSizes<M, HD, ROWS>;
  static constexpr int kR = ROWS / 16;  // m16 row blocks per warp
  static constexpr int kBlockM = Tiles::kBlockM, kBlockN = Tiles::kBlockN, kMinBlocks = Tiles::kMinBlocks;
  // Tiles are loaded kPrefetch ahead of the step that first reads them, so the ring holds the one being read too.
  // kSplitKV: one stage each for K and V, loaded in turn within a tile's step (kernel.cuh), not a ring.
  static constexpr bool kSplitKV = Tiles::kSplitKV;
  static constexpr int kPrefetch = Tiles::kPrefetch, kStages = kSplitKV ? 1 : kPrefetch + 1;
  // The ring stage key tile j lives in.
  __device__ static constexpr int stage(int j) { return static_cast<int>(static_cast<unsigned>(j) % kStages); }
  static constexpr bool kPipe = Tiles::kPipe;
  static constexpr int kWarps = kBlockM / ROWS, kThreads = kWarps * 32;
  static constexpr bool kFp32 = is_fp32(M);
  using Elem = std::conditional_t<kFp32, float, uint16_t>;
  static constexpr int kQKPitch = HD + 8;              // see warp_mma16.cuh / warp_mma32.cuh for why
  static constexpr int kVPitch = kFp32 ? HD + 4 : HD + 8;
  using Mma = std::conditional_t<kFp32, WarpMma32<M == Mode::kTf32x3, HD, kBlockN, kQKPitch, kVPitch>,
                                 std::conditional_t<kR == 1, WarpMma16<M == Mode::kBF16, HD, kBlockN, kQKPitch, Tiles::kQInRegs>,
                                                    WarpMma16R<M == Mode::kBF16, HD, kBlockN, kQKPitch, Tiles::kQInRegs, kR>>>;
  static_assert(!kFp32 || kR == 1, "float32 modes: 16 rows per warp");
  static constexpr int kQElems = kBlockM * kQKPitch, kKElems = kBlockN * kQKPitch, kVElems = kBlockN * kVPitch;
  static constexpr size_t kSmemBytes = sizeof(Elem) * (kQElems + kStages * (kKElems + kVElems));
};

template <typename Elem>
__device__ __forceinline__ void store_pair(Elem* dst, float x, float y, bool bf16) {
  if constexpr (std::is_same_v<Elem, float>) {
    *reinterpret_cast<float2*>(dst) = make_float2(x, y);
  } else {
    *reinterpret_cast<uint32_t*>(dst) = bf16 ? pack2<true>(x, y) : pack2<false>(x, y);
  }
}

template <Mode M, int HD, bool CAUSAL>
__global__ void __launch_bounds__(KernelConfig<M, HD>::kThreads, KernelConfig<M, HD>::kMinBlocks)
    v3_fwd_kernel(const __grid_constant__ V3Args a) {
  using Cfg = KernelConfig<M, HD>;
  using Elem = typename Cfg::Elem;
  constexpr int BM = Cfg::kBlockM, BN = Cfg::kBlockN, NT = Cfg::kThreads;
  constexpr int QKP = Cfg::kQKPitch, VP = Cfg::kVPitch;
  constexpr bool kSplit = Cfg::kSplitKV;
  const FwdParams& p = a.p;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  Elem* sQ = reinterpret_cast<Elem*>(smem_raw);
  Elem* sK = sQ + Cfg::kQElems;
  Elem* sV = sK + Cfg::kStages * Cfg::kKElems;

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  int64_t bh = blockIdx.x / a.n_qblocks, qb = blockIdx.x % a.n_qblocks;
  if (CAUSAL) grouped_longest_first<int64_t>(blockIdx.x, a.n_qblocks, p.B * p.H, a.head_group, bh, qb);
  const int64_t b = bh / p.H, h = bh % p.H, hk = h / p.group;
  const int64_t m0 = qb * BM;
  const int rows_valid = static_cast<int>(p.L - m0 < BM ? p.L - m0 : BM);

  const Elem* qg = static_cast<const Elem*>(p.q) + b * p.q_sb + h * p.q_sh + m0 * p.q_sl;
  const Elem* kg = static_cast<const Elem*>(p.k) + b * p.k_sb + hk * p.k_sh;
  const Elem* vg = static_cast<const Elem*>(p.v) + b * p.v_sb + hk * p.v_sh;

  // Keys past key_end are hidden from every row of this block: never loaded, zero-filled.
  int64_t key_end = p.S;
  if (CAUSAL) {
    const int64_t e = m0 + rows_valid + p.causal_offset;
    key_end = e < 0 ? 0 : (e < p.S ? e : p.S);
  }
  const int n_tiles = static_cast<int>((key_end + BN - 1) / BN);
  const int E = static_cast<int>(p.E), Ev = static_cast<int>(p.Ev);

  auto tile_rows = [&](int j) {
    const int64_t left = key_end - int64_t(j) * BN;
    return static_cast<int>(left < BN ? left : BN);
  };
  auto load_k = [&](int j) {
    Elem* dst = sK + Cfg::stage(j) * Cfg::kKElems;
    copy_tile<Elem, BN, HD, QKP, NT>(dst, kg + int64_t(j) * BN * p.k_sl, p.k_sl, tile_rows(j), E, a.k_vec, tid);
  };
  auto load_v = [&](int j) {
    Elem* dst = sV + Cfg::stage(j) * Cfg::kVElems;
    copy_tile<Elem, BN, HD, VP, NT>(dst, vg + int64_t(j) * BN * p.v_sl, p.v_sl, tile_rows(j), Ev, a.v_vec, tid);
  };

  copy_tile<Elem, BM, HD, QKP, NT>(sQ, qg, p.q_sl, rows_valid, E, a.q_vec, tid);
  ptx::cp_async_commit();
  if (n_tiles > 0) {
    load_k(0);
    if constexpr (!kSplit) load_v(0);
  }
  ptx::cp_async_commit();

  typename Cfg::Mma mma;
  const Elem* sQw = sQ + warp * 16 * QKP;
  ptx::cp_async_wait<1>();
  __syncthreads();
  mma.load_q(sQw, lane);

  float O[HD / 8][4];
#pragma unroll
  for (int i = 0; i < HD / 8; ++i) O[i][0] = O[i][1] = O[i][2] = O[i][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};

  const int64_t r0 = m0 + warp * 16;     // the warp's first row
  const int64_t row_g = r0 + g;          // this thread's rows: row_g and row_g + 8
  const int64_t off = p.causal_offset;
  const float c = a.prescale ? 1.f : p.scale_log2;
  const bool has_bool = p.mask_kind == MaskKind::kBool, has_float = p.mask_kind == MaskKind::kFloat;
  const uint8_t* mrow[2] = {nullptr, nullptr};
  int64_t mrow_off[2] = {-1, -1};  // float-mask element offset of each thread row, -1 past L
  if (p.mask_kind != MaskKind::kNone) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int64_t row = row_g + 8 * r;
      if (row < p.L) {
        mrow_off[r] = b * p.m_sb + h * p.m_sh + row * p.m_sl;
        if (has_bool) mrow[r] = static_cast<const uint8_t*>(p.mask) + mrow_off[r];
      }
    }
  }

  for (int j = 0; j < n_tiles; ++j) {
    ptx::cp_async_wait<0>();
    // K_j is visible to all (V_j too without kSplit); every warp is done with tile j - 1's buffers.
    __syncthreads();
    if constexpr (kSplit) {
      load_v(j);  // lands under Q*K_j^T
    } else if (j + 1 < n_tiles) {
      load_k(j + 1);
      load_v(j + 1);
    }
    ptx::cp_async_commit();

    const int64_t n0 = int64_t(j) * BN;
    // Warp-uniform: rows past L, or keys all right of this warp's last causal key.
    bool live = !(r0 >= p.L || (CAUSAL && n0 > r0 + 15 + off));
    bool masked = false;
    Bits<BN> vis = full_bits<BN>();
    float S[BN / 8][4];
#pragma unroll
    for (int i = 0; i < BN / 8; ++i) S[i][0] = S[i][1] = S[i][2] = S[i][3] = 0.f;
    if (live) {
      masked = n0 + BN > p.S || (CAUSAL && n0 + BN - 1 > r0 + off) || (p.mask_kind != MaskKind::kNone && r0 + 16 > p.L);
      // Mask loads go out before Q*K^T and are first used after it: the products hide their latency.
      const Bits<BN> mask_bits = has_bool ? bool_mask_bits<BN>(mrow, n0 + 2 * t, p.S, p.m_ss) : full_bits<BN>();
      mma.qk(S, sQw, sK + Cfg::stage(j) * Cfg::kKElems, lane);

      if (masked) vis = bounds_bits<BN, CAUSAL>(row_g, n0 + 2 * t, p.L, p.S, off);
      if (has_bool) {
        vis &= mask_bits;
        masked = true;
      }
      if (masked && !has_float) {
        if (__all_sync(0xffffffffu, vis == 0)) live = false;  // nothing visible: no softmax update, no P*V
        else if (__all_sync(0xffffffffu, vis == full_bits<BN>())) masked = false;
      }
    }
    if constexpr (kSplit) {
      ptx::cp_async_wait<0>();
      __syncthreads();  // V_j is visible to all; every warp is done with K_j
      if (j + 1 < n_tiles) load_k(j + 1);  // lands under this tile's softmax and P*V
      ptx::cp_async_commit();
    }
    if (!live) continue;

    if (a.prescale) {
#pragma unroll
      for (int nb = 0; nb < BN / 8; ++nb)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float s = S[nb][e] * p.scale_log2;
          if (has_float && ((vis >> (nb * 4 + e)) & 1)) {
            const float bias = load_bias(p.mask, mrow_off[e >> 1] + (n0 + nb * 8 + 2 * t + (e & 1)) * p.m_ss,
                                         p.mask_dtype);
            if (bias == -INFINITY) vis &= ~(Bits<BN>{1} << (nb * 4 + e));
            s = fmaf(bias, 1.4426950408889634f, s);
          }
          S[nb][e] = s;
        }
      if (has_float) masked = true;
    }
    if (masked) {
#pragma unroll
      for (int nb = 0; nb < BN / 8; ++nb)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          if (!((vis >> (nb * 4 + e)) & 1)) S[nb][e] = -INFINITY;
    }

    online_softmax<BN / 8, HD / 8, Cfg::kFp32, !Cfg::kFp32>(S, O, m, l, c);

    const Bits<BN> keys = masked ? warp_key_bits<BN>(vis) : Bits<BN>{0};
    constexpr Bits<BN> kAllKeys = full_bits<BN>() & static_cast<Bits<BN>>(0x3333333333333333ull);
    if (masked && __any_sync(0xffffffffu, keys != kAllKeys))
      mma.template pv<true>(O, S, sV + Cfg::stage(j) * Cfg::kVElems, lane, keys);
    else
      mma.template pv<false>(O, S, sV + Cfg::stage(j) * Cfg::kVElems, lane, Bits<BN>{0});
  }

  // Epilogue: normalise, write LSE, stage O through this warp's Q rows, store rows < L.
  ptx::cp_async_wait<0>();
  __syncthreads();
  Elem* sO = sQ + warp * 16 * QKP;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float lr = quad_sum(l[r]);
    const float inv = lr > 0.f ? 1.f / lr : 0.f;
    const int64_t row = row_g + 8 * r;
    if (t == 0 && row < p.L) {
      const float base = m[r] == -INFINITY ? 0.f : m[r] * c;
      p.lse[bh * p.L + row] = lr > 0.f ? (base + log2f(lr)) * 0.6931471805599453f : -INFINITY;
    }
#pragma unroll
    for (int nb = 0; nb < HD / 8; ++nb)
      store_pair(sO + (g + 8 * r) * QKP + nb * 8 + 2 * t, O[nb][2 * r] * inv, O[nb][2 * r + 1] * inv,
                 M == Mode::kBF16);
  }
  __syncwarp();
  if (r0 >= p.L) return;
  const int rows_w = static_cast<int>(p.L - r0 < 16 ? p.L - r0 : 16);
  Elem* og = static_cast<Elem*>(p.out) + b * p.o_sb + h * p.o_sh + r0 * p.o_sl;
  if (a.o_vec) {
    constexpr int kPer = 16 / sizeof(Elem);
    const int chunks = Ev / kPer;
    for (int i = lane; i < rows_w * chunks; i += 32) {
      const int r = i / chunks, e = (i % chunks) * kPer;
      *reinterpret_cast<uint4*>(og + r * p.o_sl + e) = *reinterpret_cast<const uint4*>(sO + r * QKP + e);
    }
  } else {
    for (int i = lane; i < rows_w * Ev; i += 32) {
      const int r = i / Ev, e = i % Ev;
      og[r * p.o_sl + e] = sO[r * QKP + e];
    }
  }
}

}  // namespace flash_attn_ext::cuda::v3
