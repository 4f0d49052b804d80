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

// float32 operands (TF32 / 3xTF32, m16n8k8): every tile takes twice the bytes, so the 16-bit
// sizes above would need 346 KiB at HD = 128. Choices, one reason each:
//  - kBlockN = 64 keys, 4 warps of 16 keys: K and V at HD = 128 are 2 x 33 KiB (128 keys: 2 x 66).
//  - kBlockM = 32 query rows per block: Q/dO stages are 2 x 2 x 16.5 KiB at HD = 128.
//  - kQueryStep = 16 (v5's query steps): S^T and dP^T of 16 x 16 = 8 registers each beside
//    dK + dV's 128 and the 3xTF32 big/small operands (32-query steps spilled ~500 bytes at HD = 128).
//  - kPitch = HD + 4 (4 mod 32 floats): the float2 row loads (rows g, elements 2t, 2t + 1) of a
//    half-warp and the permuted-k column loads (rows 2t and 2t + 1, column g) are conflict-free.
//  - kDsPitch = kBlockM + 4 (4 mod 32), likewise for dS^T read as dQ's A operand.
// Bytes: 4 * (2*64 + 4*32) * (HD + 4) + 2 * 64 * 36 * 4 + 2 * 2 * 32 * 4 + 8:
//   150.5 KiB at HD = 128 (fits sm_80's 163 KiB), 119 KiB at 96, 88 KiB at 64 (two CTAs on sm_90), 57 KiB at 32.
template <int HD>
struct TileSizesF32 {
  static constexpr int kBlockM = 32;
  static constexpr int kBlockN = 64;
  static constexpr int kQueryStep = 16;
  static constexpr int kWarps = 4, kThreads = kWarps * 32;
  static constexpr int kPitch = HD + 4;
  static constexpr int kDsPitch = kBlockM + 4;
  static_assert(kBlockN == 16 * kWarps, "one 16-key slice per warp");
  static_assert(kBlockM == 16 * (kWarps / 2), "dQ step: 2 slices of 16 query rows x 2 groups of feature chunks");
  static_assert(kPitch % 32 == 4 && kDsPitch % 32 == 4, "conflict-free fragment loads");
};

// The deterministic float32 dQ kernel: 4 warps of 16 query rows (kBlockM 64) and 32-key steps, so
// Q, dO (2 x 33 KiB) and two stages of K, V (4 x 16.5 KiB) take 132 KiB at HD = 128 (64-key steps:
// 198 KiB, past sm_80's 163).
template <int HD>
struct DqTileSizesF32 {
  static constexpr int kBlockM = 64;
  static constexpr int kBlockN = 32;
  static constexpr int kWarps = 4, kThreads = kWarps * 32;
  static constexpr int kPitch = HD + 4;
  static_assert(kBlockM == 16 * kWarps, "one 16-row slice per warp");
};

}  // namespace flash_attn_ext::cuda::bwd
