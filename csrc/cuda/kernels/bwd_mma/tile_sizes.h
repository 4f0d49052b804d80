// Tile sizes of the backward kernels, per head-dim bucket (max(E, Ev) rounded up).
//
// dK/dV kernel: a CTA owns kBlockN keys and 4 warps; warp w owns keys 16w..16w+15 and keeps
// their dK and dV (16 x HD floats each, HD/2 + HD/2 registers per thread) in registers for the
// whole query loop. That is what caps the bucket at 128: at 160 the two accumulators alone
// would take 160 registers and the scores and dP another 64, past the 255 limit.
// Query blocks of kBlockM rows stream through a two-stage cp.async pipeline (Q and dO).
//
// Shared memory (16-bit, pitch HD + 8): K, V (kBlockN rows), 2 stages of Q and dO (kBlockM rows),
// dS^T (kBlockN x (kBlockM + 8)) and 2 stages of lse/D: at HD = 128, 112 KiB, so two CTAs
// (8 warps) share an SM.
#pragma once

namespace flash_attn_ext::cuda::bwd {

constexpr int kBuckets[] = {32, 64, 96, 128};
constexpr int kMaxHeadDim = 128;

template <int HD>
struct TileSizes {
  static constexpr int kBlockM = 64;  // query rows per step of the dK/dV kernel, rows per CTA of the dQ kernel
  static constexpr int kBlockN = 64;  // keys per CTA of the dK/dV kernel, keys per step of the dQ kernel
  static constexpr int kWarps = 4, kThreads = kWarps * 32;
  static constexpr int kPitch = HD + 8;          // conflict-free ldmatrix rows (see v3's warp_mma16.cuh)
  static constexpr int kDsPitch = kBlockM + 8;   // dS^T rows (keys), likewise
  static_assert(kBlockN == 16 * kWarps && kBlockM == 16 * kWarps, "one 16-row slice per warp");
};

}  // namespace flash_attn_ext::cuda::bwd
