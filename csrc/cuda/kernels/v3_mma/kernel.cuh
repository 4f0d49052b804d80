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
//
// Step 3 (ROWS = 32, 16-bit modes, head dims <= 128; FLASH_ATTN_EXT_V3_ROWS=16|32 picks per call,
// the default per bucket is in tile_sizes.h): each warp owns two m16 row blocks (32 query rows,
// FA2's sm80 split at E=128: 4 warps x 32 rows, 64 keys), so every K and V fragment that
// ldmatrix reads from shared memory feeds two mmas instead of one: P*V's smem bytes per mma halve
// (256 -> 128), Q*K^T's go 256 -> 192 (Q is re-read per k-step from E=64 up, as FA2 does: its
// fragments would not fit beside O and S), and each warp has twice the independent mmas in flight.
// Tile classification (votes), causal skips and the zero-weight-key guard now cover the warp's 32
// rows; P*V is one body with run-time key masks (all ones on unmasked tiles). Should buy ~1.3x over
// ROWS = 16 (arithmetic and prediction in NOTES_v3.md step 3; not yet measured).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "../../ptx/cp_async.cuh"
#include "args.h"
#include "masking.cuh"
#include "softmax.cuh"
#include "tile_copy.cuh"
#include "tile_sizes.h"
#include "warp_mma16.cuh"
#include "warp_mma32.cuh"

namespace flash_attn_ext::cuda::v3 {

template <Mode M, int HD, int ROWS = 16>
struct KernelConfig {
  using Tiles = TileSizes<M, HD, ROWS>;
  static constexpr int kRows = ROWS, kR = ROWS / 16;  // query rows per warp, m16 row blocks per warp
  static constexpr int kBlockM = Tiles::kBlockM, kBlockN = Tiles::kBlockN, kMinBlocks = Tiles::kMinBlocks;
  static constexpr int kWarps = kBlockM / ROWS, kThreads = kWarps * 32;
  static constexpr bool kFp32 = is_fp32(M);
  using Elem = std::conditional_t<kFp32, float, uint16_t>;
  static constexpr int kQKPitch = HD + 8;              // see warp_mma16.cuh / warp_mma32.cuh for why
  static constexpr int kVPitch = kFp32 ? HD + 4 : HD + 8;
  using Mma = std::conditional_t<kFp32, WarpMma32<M == Mode::kTf32x3, HD, kBlockN, kQKPitch, kVPitch>,
                                 WarpMma16<M == Mode::kBF16, HD, kBlockN, kQKPitch, Tiles::kQInRegs, kR>>;
  static_assert(!kFp32 || kR == 1, "float32 modes: 16 rows per warp");
  static constexpr int kQElems = kBlockM * kQKPitch, kKElems = kBlockN * kQKPitch, kVElems = kBlockN * kVPitch;
  static constexpr size_t kSmemBytes = sizeof(Elem) * (kQElems + 2 * kKElems + 2 * kVElems);
};

template <typename Elem>
__device__ __forceinline__ void store_pair(Elem* dst, float x, float y, bool bf16) {
  if constexpr (std::is_same_v<Elem, float>) {
    *reinterpret_cast<float2*>(dst) = make_float2(x, y);
  } else {
    *reinterpret_cast<uint32_t*>(dst) = bf16 ? pack2<true>(x, y) : pack2<false>(x, y);
  }
}

template <Mode M, int HD, bool CAUSAL, int ROWS>
__global__ void __launch_bounds__(KernelConfig<M, HD, ROWS>::kThreads, KernelConfig<M, HD, ROWS>::kMinBlocks)
    v3_fwd_kernel(const __grid_constant__ V3Args a) {
  using Cfg = KernelConfig<M, HD, ROWS>;
  using Elem = typename Cfg::Elem;
  constexpr int BM = Cfg::kBlockM, BN = Cfg::kBlockN, NT = Cfg::kThreads, R = Cfg::kR, WR = ROWS;
  constexpr int QKP = Cfg::kQKPitch, VP = Cfg::kVPitch;
  const FwdParams& p = a.p;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  Elem* sQ = reinterpret_cast<Elem*>(smem_raw);
  Elem* sK = sQ + Cfg::kQElems;
  Elem* sV = sK + 2 * Cfg::kKElems;

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int64_t bh = blockIdx.x / a.n_qblocks;
  int64_t qb = blockIdx.x % a.n_qblocks;
  if (CAUSAL) qb = a.n_qblocks - 1 - qb;  // longest rows first: better tail balance
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

  auto load_kv = [&](int j) {
    const int64_t n0 = int64_t(j) * BN;
    const int rows = static_cast<int>(key_end - n0 < BN ? key_end - n0 : BN);
    copy_tile<Elem, BN, HD, QKP, NT>(sK + (j & 1) * Cfg::kKElems, kg + n0 * p.k_sl, p.k_sl, rows, E, a.k_vec, tid);
    copy_tile<Elem, BN, HD, VP, NT>(sV + (j & 1) * Cfg::kVElems, vg + n0 * p.v_sl, p.v_sl, rows, Ev, a.v_vec, tid);
  };

  copy_tile<Elem, BM, HD, QKP, NT>(sQ, qg, p.q_sl, rows_valid, E, a.q_vec, tid);
  ptx::cp_async_commit();
  if (n_tiles > 0) load_kv(0);
  ptx::cp_async_commit();

  typename Cfg::Mma mma;
  const Elem* sQw = sQ + warp * WR * QKP;
  ptx::cp_async_wait<1>();
  __syncthreads();
  mma.load_q(sQw, lane);

  float O[R][HD / 8][4];
  float m[R][2], l[R][2];
#pragma unroll
  for (int rb = 0; rb < R; ++rb) {
#pragma unroll
    for (int i = 0; i < HD / 8; ++i) O[rb][i][0] = O[rb][i][1] = O[rb][i][2] = O[rb][i][3] = 0.f;
    m[rb][0] = m[rb][1] = -INFINITY;
    l[rb][0] = l[rb][1] = 0.f;
  }

  const int64_t r0 = m0 + warp * WR;     // the warp's first row
  const int64_t row_g = r0 + g;          // this thread's rows: row_g + 16 rb and row_g + 16 rb + 8
  const int64_t off = p.causal_offset;
  const float c = a.prescale ? 1.f : p.scale_log2;
  const bool has_bool = p.mask_kind == MaskKind::kBool, has_float = p.mask_kind == MaskKind::kFloat;
  // Mask element offset of row row_g; thread row (rb, r) is row_g + 16 rb + 8 r, at
  // mbase + (16 rb + 8 r) * m_sl. One 64-bit value live across the key loop (not one per row:
  // at 32 rows per warp those registers pushed the loop into spills).
  const int64_t mbase = p.mask_kind == MaskKind::kNone ? 0 : b * p.m_sb + h * p.m_sh + row_g * p.m_sl;

  for (int j = 0; j < n_tiles; ++j) {
    ptx::cp_async_wait<0>();
    __syncthreads();  // tile j is visible to all; every warp is done with tile j - 1's buffer
    if (j + 1 < n_tiles) load_kv(j + 1);
    ptx::cp_async_commit();

    const int64_t n0 = int64_t(j) * BN;
    // Warp-uniform: rows past L, or keys all right of this warp's last causal key.
    if (r0 >= p.L || (CAUSAL && n0 > r0 + WR - 1 + off)) continue;

    bool masked = n0 + BN > p.S || (CAUSAL && n0 + BN - 1 > r0 + off) ||
                  (p.mask_kind != MaskKind::kNone && r0 + WR > p.L);
    // Mask loads go out before Q*K^T and are first used after it: the products hide their latency.
    Bits<BN> mask_bits[R];
#pragma unroll
    for (int rb = 0; rb < R; ++rb) {
      mask_bits[rb] = full_bits<BN>();
      if (has_bool) {
        const uint8_t* mrow[2];  // nullptr for rows past L
#pragma unroll
        for (int r = 0; r < 2; ++r)
          mrow[r] = row_g + 16 * rb + 8 * r < p.L
                        ? static_cast<const uint8_t*>(p.mask) + mbase + (16 * rb + 8 * r) * p.m_sl
                        : nullptr;
        mask_bits[rb] = bool_mask_bits<BN>(mrow, n0 + 2 * t, p.S, p.m_ss);
      }
    }

    float S[R][BN / 8][4];
#pragma unroll
    for (int rb = 0; rb < R; ++rb)
#pragma unroll
      for (int i = 0; i < BN / 8; ++i) S[rb][i][0] = S[rb][i][1] = S[rb][i][2] = S[rb][i][3] = 0.f;
    mma.qk(S, sQw, sK + (j & 1) * Cfg::kKElems, lane);

    // vis[rb]: the scores of row block rb that are visible (masking.cuh's bit layout).
    Bits<BN> vis[R];
    bool none = true, all = true;
#pragma unroll
    for (int rb = 0; rb < R; ++rb) {
      vis[rb] = masked ? bounds_bits<BN, CAUSAL>(row_g + 16 * rb, n0 + 2 * t, p.L, p.S, off) : full_bits<BN>();
      if (has_bool) vis[rb] &= mask_bits[rb];
      none = none && vis[rb] == 0;
      all = all && vis[rb] == full_bits<BN>();
    }
    if (has_bool) masked = true;
    if (masked && !has_float) {
      if (__all_sync(0xffffffffu, none)) continue;  // nothing visible: no softmax update, no P*V
      if (__all_sync(0xffffffffu, all)) masked = false;
    }

    if (a.prescale) {
#pragma unroll
      for (int rb = 0; rb < R; ++rb)
#pragma unroll
        for (int nb = 0; nb < BN / 8; ++nb)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            float s = S[rb][nb][e] * p.scale_log2;
            if (has_float && ((vis[rb] >> (nb * 4 + e)) & 1)) {
              // A set vis bit implies the row is below L (bounds_bits ran: the tile is masked).
              const float bias = load_bias(p.mask,
                                           mbase + (16 * rb + 8 * (e >> 1)) * p.m_sl +
                                               (n0 + nb * 8 + 2 * t + (e & 1)) * p.m_ss,
                                           p.mask_dtype);
              if (bias == -INFINITY) vis[rb] &= ~(Bits<BN>{1} << (nb * 4 + e));
              s = fmaf(bias, 1.4426950408889634f, s);
            }
            S[rb][nb][e] = s;
          }
      if (has_float) masked = true;
    }
    if (masked) {
#pragma unroll
      for (int rb = 0; rb < R; ++rb)
#pragma unroll
        for (int nb = 0; nb < BN / 8; ++nb)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            if (!((vis[rb] >> (nb * 4 + e)) & 1)) S[rb][nb][e] = -INFINITY;
    }

#pragma unroll
    for (int rb = 0; rb < R; ++rb) online_softmax(S[rb], O[rb], m[rb], l[rb], c);

    // Keys some row of either row block sees: the V fragments are shared by both.
    Bits<BN> vis_any = vis[0];
#pragma unroll
    for (int rb = 1; rb < R; ++rb) vis_any |= vis[rb];
    const Bits<BN> keys = masked ? warp_key_bits<BN>(vis_any) : Bits<BN>{0};
    constexpr Bits<BN> kAllKeys = full_bits<BN>() & static_cast<Bits<BN>>(0x3333333333333333ull);
    if constexpr (R > 1) {
      // One P*V body (the AND with all-ones masks is 4 LOP3 per 4 mmas): half the code of two bodies.
      mma.template pv<true>(O, S, sV + (j & 1) * Cfg::kVElems, lane, masked ? keys : kAllKeys);
    } else if (masked && __any_sync(0xffffffffu, keys != kAllKeys)) {
      mma.template pv<true>(O, S, sV + (j & 1) * Cfg::kVElems, lane, keys);
    } else {
      mma.template pv<false>(O, S, sV + (j & 1) * Cfg::kVElems, lane, Bits<BN>{0});
    }
  }

  // Epilogue: normalise, write LSE, stage O through this warp's Q rows, store rows < L.
  ptx::cp_async_wait<0>();
  __syncthreads();
  Elem* sO = sQ + warp * WR * QKP;
#pragma unroll
  for (int rb = 0; rb < R; ++rb)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float lr = quad_sum(l[rb][r]);
      const float inv = lr > 0.f ? 1.f / lr : 0.f;
      const int64_t row = row_g + 16 * rb + 8 * r;
      if (t == 0 && row < p.L) {
        const float base = m[rb][r] == -INFINITY ? 0.f : m[rb][r] * c;
        p.lse[bh * p.L + row] = lr > 0.f ? (base + log2f(lr)) * 0.6931471805599453f : -INFINITY;
      }
#pragma unroll
      for (int nb = 0; nb < HD / 8; ++nb)
        store_pair(sO + (16 * rb + g + 8 * r) * QKP + nb * 8 + 2 * t, O[rb][nb][2 * r] * inv,
                   O[rb][nb][2 * r + 1] * inv, M == Mode::kBF16);
    }
  __syncwarp();
  if (r0 >= p.L) return;
  const int rows_w = static_cast<int>(p.L - r0 < WR ? p.L - r0 : WR);
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
