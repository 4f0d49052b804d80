// Tile sizes of the backward kernels, per head-dim bucket (max(E, Ev) rounded up).
//
// dK/dV kernel: a CTA owns kBlockN = 128 keys and 8 warps; warp w owns keys 16w..16w+15 and keeps
// their dK and dV (16 x HD floats each, HD/2 + HD/2 registers per thread) in registers for the
// whole query loop. That is what caps the bucket at 128: at 160 the two accumulators alone
// would take 160 registers and the scores and dP another 64, past the 255 limit.
// 128 keys rather than 64 (measured, NOTES_bwd.md): every query block's Q and dO tiles and its
// dQ reductions serve twice the keys. Query blocks of kBlockM rows stream through a two-stage
// cp.async pipeline (Q and dO).
//
// Shared memory (16-bit, pitch HD + 8): K, V (kBlockN rows), 2 stages of Q and dO (kBlockM rows),
// 2 buffers of dS^T (kBlockN x (kBlockM + 8)) and 2 stages of lse/D: 173 KiB at HD = 128, 109 KiB
// at HD = 64. Either way one CTA per SM: 8 warps x ~250 registers fill the register file.
//
// The deterministic dQ kernel has its own, forward-like tiles: 4 warps of 16 query rows, 64-key
// steps (its S and dP are 16 x kBlockN each, in registers beside dQ).
#pragma once

namespace flash_attn_ext::cuda::bwd {

constexpr int kBuckets[] = {32, 64, 96, 128};
constexpr int kMaxHeadDim = 128;

template <int HD>
struct TileSizes {
  static constexpr int kBlockM = 64;   // query rows per step
  static constexpr int kBlockN = 128;  // keys per CTA
  static constexpr int kWarps = 8, kThreads = kWarps * 32;
  static constexpr int kPitch = HD + 8;         // conflict-free ldmatrix rows (see v3's warp_mma16.cuh)
  static constexpr int kDsPitch = kBlockM + 8;  // dS^T rows (keys), likewise
  static_assert(kBlockN == 16 * kWarps, "one 16-key slice per warp");
  static_assert(kBlockM == 16 * (kWarps / 2), "dQ step: 4 slices of 16 query rows x 2 groups of feature chunks");
};

template <int HD>
struct DqTileSizes {
  static constexpr int kBlockM = 64;  // query rows per CTA
  static constexpr int kBlockN = 64;  // keys per step
  static constexpr int kWarps = 4, kThreads = kWarps * 32;
  static constexpr int kPitch = HD + 8;
  static_assert(kBlockM == 16 * kWarps, "one 16-row slice per warp");
};

}  // namespace flash_attn_ext::cuda::bwd
