// v4 tile shape and shared-memory layout (host and device).
//
// One CTA owns kBlockM = 128 query rows of one (batch, head): warpgroup 0 is the producer
// (one thread issues every TMA copy), warpgroups 1 and 2 are consumers, each owning 64 rows.
// K and V stream through a kStages-deep ring of kBlockN-key tiles. Every tile is stored as
// E/64 chunks of (rows x 64 values), 128 bytes per row with the TMA's 128-byte swizzle, which
// is the layout wgmma's swizzled descriptors read: K-major for Q and K, MN-major for V.
#pragma once

#include <cstdint>

namespace flash_attn_ext::cuda::v4 {

constexpr int kBlockM = 128;
constexpr int kBlockN = 128;
constexpr int kStages = 2;
constexpr int kConsumerWarpgroups = kBlockM / 64;
constexpr int kThreads = 128 * (1 + kConsumerWarpgroups);
constexpr int kChunk = 64;  // values per 128-byte swizzled row

// Registers per thread after setmaxnreg: the producer keeps a few, consumers take the rest
// (128 * 24 + 256 * 240 = 64512 of the SM's 65536).
constexpr int kProducerRegs = 24;
constexpr int kConsumerRegs = 240;

template <int E>
struct alignas(1024) Smem {
  static_assert(E % kChunk == 0, "v4: E must be a multiple of 64");
  alignas(1024) uint16_t q[kBlockM * E];
  alignas(1024) uint16_t k[kStages][kBlockN * E];
  alignas(1024) uint16_t v[kStages][kBlockN * E];
  alignas(8) uint64_t q_full;
  alignas(8) uint64_t k_full[kStages];
  alignas(8) uint64_t v_full[kStages];
  alignas(8) uint64_t kv_empty[kStages];
};

// Dynamic shared memory to request: the struct plus slack to align its start to 1024.
template <int E>
constexpr int smem_bytes() {
  return static_cast<int>(sizeof(Smem<E>)) + 1024;
}

// What the kernel needs besides the three tensor maps.
struct Args {
  void* out;
  float* lse;  // (B, H, L) contiguous or nullptr
  int64_t o_sb, o_sh, o_sl;
  int L, S;       // S here is the last key any query can see (causal), so TMA zero-fills beyond
  int H, group;   // query heads, query heads per kv head
  int num_m;      // ceil(L / kBlockM)
  int causal_offset;
  float scale_log2;
};

}  // namespace flash_attn_ext::cuda::v4
