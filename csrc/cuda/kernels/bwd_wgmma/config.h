// Tile shapes and shared-memory layout of the Hopper backward (host and device).
//
// One CTA owns kBlockN = 128 keys of one (batch, kv head). Warpgroup 0 is the producer (warp 0
// only: lane 0 issues the TMA copies, all 32 lanes copy the rows' LSE and D into shared memory);
// warpgroups 1 and 2 are consumers, consumer cw owning keys [64 cw, 64 cw + 64) of the block and
// their dK and dV accumulators. Query blocks of kBlockM = 64 rows (Q and dO tiles, LSE, D) stream
// through a kStages-deep ring. Every 16-bit tile is stored as E / 64 chunks of (rows x 64 values),
// 128 bytes per row under the TMA's 128-byte swizzle (the layout v4_wgmma uses, read by wgmma
// descriptors K-major or MN-major).
//
// Shared memory at E = 128: K 32 KiB + V 32 KiB + 2 x (Q 16 + dO 16) KiB + 2 x dS^T 16 KiB
// = 160 KiB, plus 1 KiB of LSE/D and the barriers; at E = 64: 96 KiB. One CTA per SM either way
// (the register file is the limit: 384 threads, 128 x 24 + 256 x 240 = 64512 registers).
#pragma once

#include <cstdint>

namespace flash_attn_ext::cuda::bwdwg {

constexpr int kChunk = 64;    // values per 128-byte swizzled row
constexpr int kStages = 2;    // Q/dO/LSE/D ring depth
constexpr int kBlockM = 64;   // query rows per step
constexpr int kBlockN = 128;  // keys per CTA
constexpr int kConsumerWarpgroups = 2;
constexpr int kThreads = 128 * (1 + kConsumerWarpgroups);
constexpr int kProducerRegs = 24;
constexpr int kConsumerRegs = 240;
static_assert(128 * kProducerRegs + 128 * kConsumerWarpgroups * kConsumerRegs <= 65536, "bwd_wgmma: registers");

template <int E_>
struct Cfg {
  static_assert(E_ == 64 || E_ == 128, "bwd_wgmma: E must be 64 or 128");
  static constexpr int E = E_;
  static constexpr int kDqN = E / 2;  // dQ columns per consumer warpgroup

  struct alignas(1024) Smem {
    alignas(1024) uint16_t k[kBlockN * E];
    alignas(1024) uint16_t v[kBlockN * E];
    alignas(1024) uint16_t q[kStages][kBlockM * E];
    alignas(1024) uint16_t dout[kStages][kBlockM * E];
    // dS^T of one query block: 128 key rows x 64 queries, 128-byte swizzled; two buffers, so a
    // warpgroup may write the next block's while the other still reads this one's in its dQ product.
    alignas(1024) uint16_t ds[2][kBlockN * kBlockM];
    float lse2[kStages][kBlockM];   // LSE * log2(e); +inf for rows past L or with no visible key
    float delta[kStages][kBlockM];  // D = rowsum(dO * O) - dlse; 0 past L
    alignas(8) uint64_t kv_full;
    alignas(8) uint64_t full[kStages];
    alignas(8) uint64_t empty[kStages];
  };
  static constexpr int kSmemBytes = static_cast<int>(sizeof(Smem)) + 1024;  // + slack to align to 1024
  static_assert(kSmemBytes <= 227 * 1024, "bwd_wgmma: shared memory");
};

// What the kernel needs besides the four tensor maps.
struct Args {
  const float* lse;    // (B, H, L) natural log, -inf for rows with no visible key
  const float* delta;  // (B, H, L)
  float* dq_accum;     // (B, H, L, E) float32, zeroed by the host; receives scale * dS K
  void* dk;            // (B, Hkv, S, E) contiguous
  void* dv;            // (B, Hkv, S, E) contiguous
  int L, S;            // S: all keys (the K/V maps may stop earlier, see run_bwdwg)
  int H, Hkv, group;
  int n_kblocks;  // ceil(S / kBlockN)
  int causal_offset;
  float scale, scale_log2;
};

}  // namespace flash_attn_ext::cuda::bwdwg
