// Dense bool masks for v4: a pre-pass, once per call, packs the mask into bits laid out for the
// wgmma accumulator and classifies each 128 x 128 (query block x key tile) tile; the masked
// kernel (kernel_masked.cuh) then skips tiles nobody sees, runs tiles everybody sees without
// any mask work, and on the rest reads two 32-bit words per thread.
//
// Everything here is per "mask slice" (mb, mh): mb runs over the batches only when the mask
// really differs per batch (stride != 0 and B > 1), mh likewise over heads, so a (L, S) mask
// broadcast over (B, H) is packed once. Causal visibility and the key tail (keys >= S) are
// folded into the bits and the classes: a bit is set iff row < L, key < S, causal lets the row
// see the key, and the mask is true.
//
// Layout (all 64-bit indices; trow = (mb * MH + mh) * MT + m_blk, MT = ceil(L / 128),
// NT = ceil(S / 128)):
// - bits  uint32 [trow][NT][128 rows][4]: word t of a row holds the 32 keys that thread t of a
//   quad holds in the wgmma m64n128 accumulator: bit 2 * jb + e is key 8 * jb + 2 * t + e of the
//   tile (jb = 8-column block 0..15, e = 0, 1). A thread loads one word per row it owns.
// - list  uint32 [trow][NT]: the tiles a query block must visit, ascending, compacted to the
//   front: (nt << 3) | (hidden << 2) | cls, cls 1 = partial, 2 = all visible; hidden = some key
//   of the (partial) tile is seen by no row of the block (its V row is zeroed before P V).
// - count int32  [trow]: the list's length.
// - hid   uint4  [trow][NT]: the keys of the tile no row of the block sees (same bit order,
//   word t), valid where the list entry's hidden bit is set.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flash_attn_ext::cuda::v4 {

constexpr int kMaskBM = 128;  // query rows per tile (the masked kernel's kBlockM)
constexpr int kMaskBN = 128;  // keys per tile (the masked kernel's kBlockN)
constexpr int kMaskWords = kMaskBN / 32;  // words per row per tile = threads of a quad

enum : uint32_t { kTileNone = 0, kTilePartial = 1, kTileAll = 2 };

// Sizes of one call's mask workspace (host and device agree through this struct).
struct MaskLayout {
  int64_t MB, MH, MT, NT;
  int64_t bits_off, list_off, count_off, hid_off, bytes;

  __host__ __device__ static int64_t align256(int64_t x) { return (x + 255) / 256 * 256; }

  // B, H, L, S and the mask's batch/head strides of one call.
  __host__ __device__ static MaskLayout make(int64_t B, int64_t H, int64_t L, int64_t S, int64_t m_sb,
                                             int64_t m_sh) {
    MaskLayout m{};
    m.MB = (B > 1 && m_sb != 0) ? B : 1;
    m.MH = (H > 1 && m_sh != 0) ? H : 1;
    m.MT = (L + kMaskBM - 1) / kMaskBM;
    m.NT = (S + kMaskBN - 1) / kMaskBN;
    const int64_t trows = m.MB * m.MH * m.MT;
    m.bits_off = 0;
    m.list_off = align256(m.bits_off + trows * m.NT * kMaskBM * kMaskWords * 4);
    m.count_off = align256(m.list_off + trows * m.NT * 4);
    m.hid_off = align256(m.count_off + trows * 4);
    m.bytes = align256(m.hid_off + trows * m.NT * 16);
    return m;
  }
};

// What the masked kernel reads (pointers into the workspace).
struct MaskArgs {
  const uint32_t* bits;
  const uint32_t* list;
  const int* count;
  const uint4* hid;
  int MB, MH, NT;
  int reverse;  // 1: query blocks run last to first (causal: longest rows first)
};

// Pass 1: one CTA (4 warps) per tile (trow, nt). Warp w packs rows w, w + 4, ..., one ballot per
// output word (lane b reads the mask byte of the key that bit b stands for), then the CTA
// classifies the tile. Grid: trows * NT CTAs (x), the tile index is blockIdx.x.
template <int kUnused = 0>
__global__ void __launch_bounds__(128) v4_mask_pack_kernel(const uint8_t* __restrict__ mask, int64_t m_sb,
                                                           int64_t m_sh, int64_t m_sl, int64_t m_ss, int64_t L,
                                                           int64_t S, int causal, int64_t causal_offset,
                                                           int64_t key_end, MaskLayout lay, unsigned char* ws) {
  const int64_t tile = blockIdx.x;  // trow * NT + nt
  const int64_t nt = tile % lay.NT, trow = tile / lay.NT;
  const int64_t m_blk = trow % lay.MT, mslice = trow / lay.MT;
  const int64_t mh = mslice % lay.MH, mb = mslice / lay.MH;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  uint32_t* bits = reinterpret_cast<uint32_t*>(ws + lay.bits_off) + tile * (kMaskBM * kMaskWords);
  const uint8_t* mbase = mask + mb * m_sb + mh * m_sh;

  uint32_t any_vis = 0, all_vis = 0xffffffffu;  // over this warp's rows < L
  uint32_t col_vis[kMaskWords] = {0, 0, 0, 0};   // keys seen by some row, per word (lane 0 keeps them)
#pragma unroll 4  // 16 independent byte loads in flight per lane
  for (int r = warp; r < kMaskBM; r += 4) {
    const int64_t row = m_blk * kMaskBM + r;
    uint32_t w[kMaskWords];
#pragma unroll
    for (int t = 0; t < kMaskWords; ++t) {
      const int64_t key = nt * kMaskBN + 8 * (lane >> 1) + 2 * t + (lane & 1);
      bool vis = row < L && key < S && (!causal || key <= row + causal_offset);
      if (vis) vis = mbase[row * m_sl + key * m_ss] != 0;
      w[t] = __ballot_sync(0xffffffffu, vis);
    }
    if (lane == 0) *reinterpret_cast<uint4*>(bits + r * kMaskWords) = make_uint4(w[0], w[1], w[2], w[3]);
    if (row < L) {
      any_vis |= w[0] | w[1] | w[2] | w[3];
      all_vis &= w[0] & w[1] & w[2] & w[3];
#pragma unroll
      for (int t = 0; t < kMaskWords; ++t) col_vis[t] |= w[t];
    }
  }
  __shared__ uint32_t s_any[4], s_all[4], s_col[4][kMaskWords];
  if (lane == 0) {
    s_any[warp] = any_vis;
    s_all[warp] = all_vis;
#pragma unroll
    for (int t = 0; t < kMaskWords; ++t) s_col[warp][t] = col_vis[t];
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    uint32_t any = 0, all = 0xffffffffu, col[kMaskWords] = {0, 0, 0, 0};
    for (int i = 0; i < 4; ++i) {
      any |= s_any[i];
      all &= s_all[i];
#pragma unroll
      for (int t = 0; t < kMaskWords; ++t) col[t] |= s_col[i][t];
    }
    // Every block has a row < L (m_blk < MT), so `all` saw at least one row. A tile reaching
    // past S has zero bits there, so it is never "all".
    const uint32_t cls = any == 0 ? kTileNone : (all == 0xffffffffu ? kTileAll : kTilePartial);
    // Keys at or past key_end are outside the K/V tensor maps (the TMA zero-fills them): only
    // loaded keys that no row of the block sees count as hidden.
    uint32_t hid[kMaskWords];
#pragma unroll
    for (int t = 0; t < kMaskWords; ++t) {
      hid[t] = ~col[t];
      for (int b = 0; b < 32; ++b)
        if (nt * kMaskBN + 8 * (b >> 1) + 2 * t + (b & 1) >= key_end) hid[t] &= ~(1u << b);
    }
    const bool hidden = cls == kTilePartial && (hid[0] | hid[1] | hid[2] | hid[3]) != 0;
    reinterpret_cast<uint32_t*>(ws + lay.list_off)[tile] = cls | (hidden ? 4u : 0u);
    reinterpret_cast<uint4*>(ws + lay.hid_off)[tile] = make_uint4(hid[0], hid[1], hid[2], hid[3]);
  }
}

// Pass 2: one warp per query block (trow): compacts the tiles to visit to the front of its list
// (in place: a chunk's writes land at or before the chunk, after all of its reads) and writes
// their count. Grid: ceil(trows / 4) CTAs of 128 threads.
template <int kUnused = 0>
__global__ void __launch_bounds__(128) v4_mask_list_kernel(MaskLayout lay, unsigned char* ws) {
  const int64_t trow = static_cast<int64_t>(blockIdx.x) * 4 + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (trow >= lay.MB * lay.MH * lay.MT) return;
  uint32_t* list = reinterpret_cast<uint32_t*>(ws + lay.list_off) + trow * lay.NT;
  int count = 0;
  for (int64_t base = 0; base < lay.NT; base += 32) {
    const int64_t nt = base + lane;
    const uint32_t c = nt < lay.NT ? list[nt] : 0u;
    const uint32_t keep = __ballot_sync(0xffffffffu, (c & 3u) != 0);
    const int pos = count + __popc(keep & ((1u << lane) - 1u));
    __syncwarp();
    if ((c & 3u) != 0) list[pos] = (static_cast<uint32_t>(nt) << 3) | c;
    count += __popc(keep);
    __syncwarp();
  }
  if (lane == 0) reinterpret_cast<int*>(ws + lay.count_off)[trow] = count;
}

// Launches both passes on `stream` (mask: one byte per element, nonzero = attend, read through
// its strides; only the slices in `lay` are read).
// key_end: the first key outside the K/V tensor maps.
inline void launch_mask_prepass(const void* mask, int64_t m_sb, int64_t m_sh, int64_t m_sl, int64_t m_ss,
                                int64_t L, int64_t S, bool causal, int64_t causal_offset, int64_t key_end,
                                const MaskLayout& lay, void* ws, cudaStream_t stream) {
  const int64_t trows = lay.MB * lay.MH * lay.MT;
  auto* w = static_cast<unsigned char*>(ws);
  v4_mask_pack_kernel<0><<<static_cast<unsigned>(trows * lay.NT), 128, 0, stream>>>(
      static_cast<const uint8_t*>(mask), m_sb, m_sh, m_sl, m_ss, L, S, causal ? 1 : 0, causal_offset, key_end, lay, w);
  v4_mask_list_kernel<0><<<static_cast<unsigned>((trows + 3) / 4), 128, 0, stream>>>(lay, w);
}

// This thread's visibility of a partial tile's scores: bit 2 * jb + e of word w[r] is the
// accumulator element s[4 * jb + 2 * r + e] (row g + 8 r, key 8 jb + 2 t + e). Hides the scores
// of unset bits with -inf (a select, so NaN scores of hidden keys go too).
template <int N>
__device__ __forceinline__ void hide_by_bits(float (&s)[N / 2], uint32_t w0, uint32_t w1) {
  static_assert(N == kMaskBN, "v4 mask bits: one word per row per 128-key tile");
#pragma unroll
  for (int jb = 0; jb < N / 8; ++jb) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const uint32_t w = (e >> 1) ? w1 : w0;
      s[4 * jb + e] = ((w >> (2 * jb + (e & 1))) & 1u) ? s[4 * jb + e] : -INFINITY;
    }
  }
}

}  // namespace flash_attn_ext::cuda::v4
