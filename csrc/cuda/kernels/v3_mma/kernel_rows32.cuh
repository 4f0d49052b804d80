// v3, step 3: 32 query rows per warp (two m16 row blocks), 16-bit modes, head dims <= 128.
//
// Changed from the 16-row rung (kernel.cuh, still selectable: FLASH_ATTN_EXT_V3_ROWS=16; the
// default per bucket is default_rows() in tile_sizes.h): each warp owns rows r0 .. r0 + 31 as two
// m16 row blocks, FA2's sm80 split at E=128 (4 warps x 32 rows = 128-row CTAs, 64 keys, two CTAs per
// SM). Every K and V fragment that ldmatrix reads from shared memory feeds the mmas of both row
// blocks (warp_mma16r.cuh): P*V's smem bytes per m16n8k16 halve (256 -> 128) and Q*K^T's go
// 256 -> 192 (Q is re-read per k-step from E=64 up, as FA2 does: its fragments would not fit beside
// O and S), and each warp has twice the independent mmas in flight. Everything warp-uniform now
// spans 32 rows: the causal skip, the tail test, the two votes that classify a tile (none visible in
// either row block -> skip; all visible in both -> no masking work), the zero-weight-key guard (keys
// no row of either block sees get V = 0). Rows, LSE and the smem-staged output go per row block.
// Bought 1.08-1.24x over 16 rows at E = 64..128 (NOTES_v3.md step 3).
//
// Step 10, up to E = 64 (TileSizes16R32::kPipe): tiles that every row of the block sees whole, with no mask,
// run a pipelined loop first: Q*K^T of tile j + 1 is issued before the softmax of tile j, which does not
// depend on it, so the compiler interleaves the two and a warp feeds its tensor pipe through its own
// softmax's latencies (two score tiles live, a third K/V stage). The general loop below takes the rest
// (diagonal and tail tiles, masks). E = 32 +18%, E = 64 +0-5% over the unpipelined loop.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernel.cuh"

namespace flash_attn_ext::cuda::v3 {

template <Mode M, int HD, bool CAUSAL>
__global__ void __launch_bounds__(KernelConfig<M, HD, 32>::kThreads, KernelConfig<M, HD, 32>::kMinBlocks)
    v3_fwd_kernel_rows32(const __grid_constant__ V3Args a) {
  constexpr int ROWS = 32;
  using Cfg = KernelConfig<M, HD, ROWS>;
  static_assert(!Cfg::kFp32 && Cfg::kR == 2, "32 rows per warp: 16-bit modes, two m16 row blocks");
  using Elem = typename Cfg::Elem;
  constexpr int BM = Cfg::kBlockM, BN = Cfg::kBlockN, NT = Cfg::kThreads, R = Cfg::kR, WR = ROWS;
  constexpr int QKP = Cfg::kQKPitch, VP = Cfg::kVPitch;
  const FwdParams& p = a.p;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  Elem* sQ = reinterpret_cast<Elem*>(smem_raw);
  Elem* sK = sQ + Cfg::kQElems;
  constexpr int ST = Cfg::kStages;
  Elem* sV = sK + ST * Cfg::kKElems;
  constexpr int D = Cfg::kPrefetch;  // tile j is loaded D tiles ahead of the step that first reads it

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

  auto load_kv = [&](int j) {
    const int64_t n0 = int64_t(j) * BN;
    const int rows = static_cast<int>(key_end - n0 < BN ? key_end - n0 : BN);
    const int st = Cfg::stage(j);
    copy_tile<Elem, BN, HD, QKP, NT>(sK + st * Cfg::kKElems, kg + n0 * p.k_sl, p.k_sl, rows, E, a.k_vec, tid);
    copy_tile<Elem, BN, HD, VP, NT>(sV + st * Cfg::kVElems, vg + n0 * p.v_sl, p.v_sl, rows, Ev, a.v_vec, tid);
  };

  copy_tile<Elem, BM, HD, QKP, NT>(sQ, qg, p.q_sl, rows_valid, E, a.q_vec, tid);
  ptx::cp_async_commit();
#pragma unroll
  for (int j = 0; j < D; ++j) {
    if (j < n_tiles) load_kv(j);
    ptx::cp_async_commit();
  }

  typename Cfg::Mma mma;
  const Elem* sQw = sQ + warp * WR * QKP;
  ptx::cp_async_wait<D - 1>();  // Q and tile 0 have landed
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
  // Mask element offset of thread row (rb, r) = row row_g + 16 rb + 8 r: mbase + (16 rb + 8 r) * m_sl,
  // computed where used. One 64-bit value live across the key loop: the 16-row kernel's per-row
  // pointers and offsets, eight 64-bit values here, pushed this loop from 92 to 140 bytes of spills.
  const int64_t mbase = p.mask_kind == MaskKind::kNone ? 0 : b * p.m_sb + h * p.m_sh + row_g * p.m_sl;

  constexpr Bits<BN> kAllKeys = full_bits<BN>() & static_cast<Bits<BN>>(0x3333333333333333ull);
  using Scores = float[R][BN / 8][4];
  auto scores = [&](Scores& S, int j) {  // S = Q K_j^T
#pragma unroll
    for (int rb = 0; rb < R; ++rb)
#pragma unroll
      for (int i = 0; i < BN / 8; ++i) S[rb][i][0] = S[rb][i][1] = S[rb][i][2] = S[rb][i][3] = 0.f;
    mma.qk(S, sQw, sK + Cfg::stage(j) * Cfg::kKElems, lane);
  };
  // The lazy max (softmax.cuh) from E = 128 up, where O's rescale is 2 FMULs per score: +3-5% there, -3-4%
  // at E = 64 (1 per score; NOTES_v3.md step 7).
  auto softmax = [&](Scores& S) {
#pragma unroll
    for (int rb = 0; rb < R; ++rb) online_softmax<BN / 8, HD / 8, false, (HD > 64)>(S[rb], O[rb], m[rb], l[rb], c);
  };

  int j0 = 0;  // the first tile of the general loop below
  if constexpr (Cfg::kPipe) {
    // Plain tiles: every key visible to every row of the block, no mask, scale folded into exp2. Row m0 sees
    // keys up to m0 + off, so tiles ending at or before it are plain for all rows; the rest (diagonal, tail)
    // take the general loop.
    int64_t plain_end = p.mask_kind == MaskKind::kNone && !a.prescale ? p.S : 0;
    if (CAUSAL && m0 + off + 1 < plain_end) plain_end = m0 + off + 1;
    const int n_plain = plain_end > 0 ? static_cast<int>(plain_end / BN) : 0;
    // One plain tile j whose scores are in Sj: tile j + 1's Q*K^T goes out first, into Snext, and has no
    // dependence on the softmax and P*V of tile j, so the scheduler interleaves the two. Tile j + 1 may be the
    // first general tile or lie past the last one (a stale stage): its scores are then never used.
    auto plain_step = [&](Scores& Sj, Scores& Snext, int j) {
      ptx::cp_async_wait<0>();
      __syncthreads();  // tile j + 1 is visible to all; every warp is done with tile j - 1's stage
      if (j + D < n_tiles) load_kv(j + D);
      ptx::cp_async_commit();
      scores(Snext, j + 1);
      softmax(Sj);
      mma.template pv<false>(O, Sj, sV + Cfg::stage(j) * Cfg::kVElems, lane, kAllKeys);
    };
    if (n_plain > 0) {
      float Sa[R][BN / 8][4], Sb[R][BN / 8][4];
      scores(Sa, 0);
      int j = 0;
      for (; j + 1 < n_plain; j += 2) {  // two steps per pass: the score tiles swap roles without copies
        plain_step(Sa, Sb, j);
        plain_step(Sb, Sa, j + 1);
      }
      if (j < n_plain) plain_step(Sa, Sb, j);
    }
    j0 = n_plain;
  }

  for (int j = j0; j < n_tiles; ++j) {
    ptx::cp_async_wait<D - 1>();
    __syncthreads();  // tile j is visible to all; every warp is done with tile j - 1's stage
    if (j + D < n_tiles) load_kv(j + D);
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
    scores(S, j);

    // vis[rb]: the scores of row block rb that are visible (masking.cuh's bit layout).
    Bits<BN> vis[R];
#pragma unroll
    for (int rb = 0; rb < R; ++rb) {
      vis[rb] = masked ? bounds_bits<BN, CAUSAL>(row_g + 16 * rb, n0 + 2 * t, p.L, p.S, off) : full_bits<BN>();
      if (has_bool) vis[rb] &= mask_bits[rb];
    }
    if (has_bool) masked = true;
    if (masked && !has_float) {
      bool none = vis[0] == 0, all = vis[0] == full_bits<BN>();
#pragma unroll
      for (int rb = 1; rb < R; ++rb) {
        none = none && vis[rb] == 0;
        all = all && vis[rb] == full_bits<BN>();
      }
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
              const int64_t row_off = mbase + (16 * rb + 8 * (e >> 1)) * p.m_sl;
              const float bias =
                  load_bias(p.mask, row_off + (n0 + nb * 8 + 2 * t + (e & 1)) * p.m_ss, p.mask_dtype);
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

    softmax(S);

    // Keys some row of either row block sees: the V fragments are shared by both.
    Bits<BN> vis_any = vis[0];
#pragma unroll
    for (int rb = 1; rb < R; ++rb) vis_any |= vis[rb];
    const Bits<BN> keys = masked ? warp_key_bits<BN>(vis_any) : Bits<BN>{0};
    // Unmasked tiles take the P*V body without key masks (4 LOP3 per ldmatrix, 128 per warp and tile
    // at E = 128). One masked body for both had been kept for fewer spills (E = 128: 72 / 132 bytes
    // instead of 108 / 148), but the split measured 3-12% faster there (NOTES_v3.md step 6).
    if (masked)
      mma.template pv<true>(O, S, sV + Cfg::stage(j) * Cfg::kVElems, lane, keys);
    else
      mma.template pv<false>(O, S, sV + Cfg::stage(j) * Cfg::kVElems, lane, kAllKeys);
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
