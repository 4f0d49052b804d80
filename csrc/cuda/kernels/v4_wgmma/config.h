// v4 tile shapes and shared-memory layout (host and device).
//
// One CTA owns kBlockM query rows of one (batch, head): warpgroup 0 is the producer (one thread
// issues every TMA copy), warpgroups 1 .. kBlockM / 64 are consumers, each owning 64 rows.
// K and V stream through a kStages-deep ring of kBlockN-key tiles. Every tile is stored as
// E/64 chunks of (rows x 64 values), 128 bytes per row with the TMA's 128-byte swizzle, which
// is the layout wgmma's swizzled descriptors read: K-major for Q and K, MN-major for V.
#pragma once

#include <cstdint>

namespace flash_attn_ext::cuda::v4 {

constexpr int kChunk = 64;  // values per 128-byte swizzled row
constexpr int kStages = 2;
constexpr int kQStages = 2;  // Q buffers of the persistent kernels up to E = 128

// One tile shape: BM query rows per CTA (BM / 64 consumer warpgroups), BN keys per K/V tile, CTAS
// CTAs resident per SM (their registers and shared memory split the SM's).
template <int E_, int BM, int BN, int CTAS = 1>
struct Cfg {
  static_assert(E_ % kChunk == 0, "v4: E must be a multiple of 64");
  static_assert(BM % 64 == 0 && BN % 16 == 0, "v4: BM a multiple of 64, BN of 16");
  using Elem = uint16_t;  // bf16 / fp16 bits in shared memory
  static constexpr int E = E_;
  static constexpr int kBlockM = BM;
  static constexpr int kBlockN = BN;
  static constexpr int kConsumerWarpgroups = BM / 64;
  static constexpr int kThreads = 128 * (1 + kConsumerWarpgroups);
  static constexpr int kCtasPerSm = CTAS;
  static constexpr int kVStages = kStages;
  // Lazy rescale (softmax.cuh, kMaxSlack): a row's running max moves only when a tile's max passes it
  // by more than the slack, and a warp whose rows all kept theirs skips the O rescale (NOTES_v4.md
  // step 11: +2-5% against rescaling every tile).
  static constexpr bool kLazyRescale = true;
  static constexpr bool kExactRescale = false;  // softmax.cuh: only the float32-accurate kernel needs it
  // Tiles after a row's first skip the row max while no score passes the running max by more than
  // log2(kSkipMaxSum) (softmax.cuh exps_at_running_max; kernel.cuh attend; NOTES_v4.md step 22).
  // Not at E > 128 (-2..-5% at E = 256, N <= 1024) nor with three consumer warpgroups (160 registers: spills).
  static constexpr bool kSkipMax = kConsumerWarpgroups == 2 && E_ <= 128;
  // Registers per thread after setmaxnreg: the producer keeps a few, consumers take the rest. setmaxnreg
  // moves registers within the CTA's launch allocation, 65536 / (kThreads * CTAS) per thread rounded down
  // to 8 (a consumer asking for more than is free would wait forever): one CTA of 384 threads gets 168,
  // so 128 * 24 + 256 * 240 = 64512 (two consumer warpgroups) or 128 * 24 + 384 * 160 = 64512 (three);
  // two CTAs of 384 get 80, so 128 * 24 + 256 * 104 = 29696 of 30720.
  static constexpr int kProducerRegs = 24;
  static constexpr int kConsumerRegs = CTAS == 2 ? 104 : kConsumerWarpgroups == 2 ? 240 : 160;
  static constexpr int kLaunchRegs = 65536 / (kThreads * CTAS) / 8 * 8;
  static_assert(128 * kProducerRegs + 128 * kConsumerWarpgroups * kConsumerRegs <= kThreads * kLaunchRegs,
                "v4: register budget");
  static constexpr int kMaxSmemBytes = 233472 / CTAS - 1024;  // the SM's 228 KB, 1 KB reserved per CTA
  // An item's last key tile runs P V only over the narrowest multiple of kTailStep keys that covers
  // what its query block sees (kernel.cuh, with_tail_width); 0: always over the whole tile. Only the
  // 80- and 112-key tiles (E = 256 and 192, below) take it: elsewhere the key tiles divide the query
  // blocks, so causal items end on whole tiles.
  static constexpr int kTailStep = BN == 80 || BN == 112 ? 16 : 0;
  // Under causal a warpgroup runs only the key tiles its own 64 rows see (kernel.cuh, own_keys_end), and on
  // a 128 x 128 tile the last one of warpgroup 0 ends halfway: its P V there runs 64 keys wide.
  static constexpr int kCausalTailStep = BM == 128 && BN == 128 ? 64 : kTailStep;

  struct alignas(1024) Smem {
    alignas(1024) uint16_t q[BM * E];
    alignas(1024) uint16_t k[kStages][BN * E];
    alignas(1024) uint16_t v[kStages][BN * E];
    alignas(8) uint64_t q_full;
    alignas(8) uint64_t k_full[kStages];
    alignas(8) uint64_t v_full[kStages];
    alignas(8) uint64_t k_empty[kStages];
    alignas(8) uint64_t v_empty[kStages];
  };
  // Dynamic shared memory to request: the struct plus slack to align its start to 1024.
  static constexpr int kSmemBytes = static_cast<int>(sizeof(Smem)) + 1024;
  static_assert(kSmemBytes <= kMaxSmemBytes, "v4: shared memory");

  // The persistent kernel's layout. Up to E = 128: two Q buffers, so the next work item's Q lands
  // while the current one still reads its own, and an O staging tile for the TMA store, so the
  // store leaves registers at once and overlaps the next item. That does not fit beside 176-key
  // tiles (E = 128: 2 * 32 + 4 * 44 + 32 = 272 KB), so those tiles have no persistent form
  // (kPersistentFits), nor beside E = 256's tiles: there one Q buffer, which the consumers release
  // once the item's last Q K^T has retired (the next Q loads during the last P V and the epilogue),
  // and O stored from registers (NOTES_v4.md step 14).
  static constexpr int kQBuffers = E_ <= 128 ? kQStages : 1;
  static constexpr bool kStageO = E_ <= 128;
  struct alignas(1024) PSmem {
    alignas(1024) uint16_t q[kQBuffers][BM * E];
    alignas(1024) uint16_t k[kStages][BN * E];
    alignas(1024) uint16_t v[kStages][BN * E];
    alignas(1024) uint16_t o[kStageO ? BM * E : 64];  // 64: a stub where O leaves from registers
    alignas(8) uint64_t q_full[kQBuffers];
    alignas(8) uint64_t q_empty[kQBuffers];
    alignas(8) uint64_t k_full[kStages];
    alignas(8) uint64_t v_full[kStages];
    alignas(8) uint64_t k_empty[kStages];
    alignas(8) uint64_t v_empty[kStages];
  };
  static constexpr int kPSmemBytes = static_cast<int>(sizeof(PSmem)) + 1024;
  static constexpr bool kPersistentFits = kPSmemBytes <= kMaxSmemBytes;
};

// E = 256: the tile for every S, causal or not (the one-item and the persistent kernel), but causal S <= 1024.
// - BM = 128, two consumer warpgroups of 64 rows: the O accumulator alone is 64 x 256 floats per
//   warpgroup = 128 registers per thread, so only the 240-register budget of two consumer
//   warpgroups holds it (three would get 160).
// - BN = 80 (FlashAttention-3's choice for this head dim): shared memory is Q 64 KB + 2 stages x
//   (K + V) 2 x 40 KB = 224 KB, 231424 B requested with barriers and alignment, of 232448; BN = 96
//   would need 264 KB. Registers of the overlapped loop: O 128 + S_{j+1} 40 + P_j 20 = 188 per
//   consumer thread, leaving ~50 of 240 for addresses, softmax state and descriptors.
// - The persistent layout keeps one Q buffer and no O staging tile (they would add 128 KB).
constexpr int kBlockN256 = 80;
// Causal E = 256 at S <= 1024 (items of 2 to 16 tiles): 64-key tiles, which end where the 64-row slices of a
// block end, so warpgroup 0 skips its block's last tile whole (kernel.cuh, own_keys_end) and no tile is
// narrow: 5% fewer products than 80-key tiles at N = 512 (NOTES_v4.md step 24).
constexpr int kBlockN256Short = 64;

// E = 192 (head dims 129..192, which ran on E = 256's tile before: a third more products at E = 192, three
// fifths at 160): the same shape of tile as E = 256, BM = 128 in two consumer warpgroups.
// - BN = 112: shared memory is Q 48 KB + 2 stages x (K + V) 2 x 42 KB = 216 KB; 128 keys would need 240 KB.
// - registers of the overlapped loop: O 96 + S_{j+1} 56 + P_j 28 = 180 per consumer thread of 240.
// - 112 keys do not divide the 128-row query blocks, so the last tile of a causal item runs P V as narrow as
//   its visible keys (kTailStep), as E = 256's 80-key tiles do.
// - the persistent layout keeps one Q buffer and no O staging tile, as at E = 256.
constexpr int kBlockN192 = 112;

// The float32 (TF32) kernel's tile (kernel_f32.cuh): BM = 128 rows in two consumer warpgroups,
// BN = 64 keys. Float32 doubles every tile's bytes, and V needs a second, transposed copy:
// - V is read from global memory by the producer warpgroup and stored transposed (no staging
//   copy: V's TMA box beside its transposed copy would cost another 64 KB per stage).
// - shared memory at E = 128: Q 64 KB + 2 K stages x 32 KB + 3 V^T stages x 32 KB = 224 KB
//   (128-key tiles would need 320 KB with two stages each). The third V^T stage gives the
//   transpose, which is slower to fill a stage than the TMA, a whole step more of slack.
// - registers: the producer warpgroup holds a whole V tile in flight (E / 8 float4 per thread)
//   while it waits for a free stage, plus the swizzled addresses of its stores; the consumers
//   take the rest of the CTA's launch allocation (168 x 384 = 64512, as the 16-bit split); a
//   consumer needs O (E / 2) + S (32) + P (32).
template <int E_, int BM, int BN>
struct CfgF32 {
  static_assert(E_ % 32 == 0 && BN % 32 == 0 && BM % 64 == 0, "v4 f32: E and BN multiples of 32, BM of 64");
  using Elem = float;
  static constexpr int E = E_;
  static constexpr int kBlockM = BM;
  static constexpr int kBlockN = BN;
  static constexpr int kConsumerWarpgroups = BM / 64;
  static constexpr int kThreads = 128 * (1 + kConsumerWarpgroups);
  static constexpr int kCtasPerSm = 1;
  static constexpr int kVStages = 3;
  static constexpr bool kLazyRescale = false;  // the float32 kernel: not measured there
  static constexpr bool kExactRescale = false;  // TF32's own error is far above the drift it removes
  static constexpr bool kSkipMax = false;       // the float32 kernel: not measured there
  static constexpr int kTailStep = 0;            // whole last tiles
  static constexpr int kCausalTailStep = 0;
  static constexpr int kProducerRegs = E_ == 128 ? 120 : 88;
  static constexpr int kConsumerRegs = E_ == 128 ? 192 : 208;
  static_assert(128 * kProducerRegs + 256 * kConsumerRegs <= 64512, "v4 f32: register budget");
  static_assert(kConsumerWarpgroups == 2, "v4 f32: the register split assumes two consumer warpgroups");

  struct alignas(1024) Smem {
    alignas(1024) float q[BM * E];
    alignas(1024) float k[kStages][BN * E];
    alignas(1024) float v[kVStages][BN * E];  // V^T (see kernel_f32.cuh)
    alignas(8) uint64_t q_full;
    alignas(8) uint64_t k_full[kStages];
    alignas(8) uint64_t v_full[kVStages];
    alignas(8) uint64_t k_empty[kStages];
    alignas(8) uint64_t v_empty[kVStages];
  };
  using PSmem = void;  // no persistent form
  static constexpr int kSmemBytes = static_cast<int>(sizeof(Smem)) + 1024;
  static_assert(kSmemBytes <= 227 * 1024, "v4 f32: shared memory");
};

// The float32-accurate kernels' tile (kernel_f32x3.cuh's 3xTF32, kernel_f16x3.cuh's 3xF16): BM = 128 rows in
// two consumer warpgroups, BN = 32 keys at E = 128, 64 at E = 64; every operand is held as two halves (hi, lo).
// - registers: the consumers hold O (E / 2), a fresh P V accumulator per 32 keys (BN / 32 of E / 2; the
//   tensor cores truncate when they add into an accumulator, so each 32 keys' products are summed apart
//   and folded into O with a rounded add), P's two halves (BN / 2 each in TF32, half that in fp16) and S as a
//   few partial accumulators (kernel_f32x3.cuh, issue_qk_3x: 80 registers at E = 128, 96 at E = 64). A
//   producer thread holds one tile in flight (BN * E / 512 float4), or one K and one V tile where a single
//   warpgroup loads both (E = 64); the split is the one with which ptxas (nvcc 13.0) spills least (3xTF32:
//   none at E = 128, 8 bytes at E = 64).
template <int E_, int BN>
struct Cfg3x {
  static_assert(E_ % 32 == 0 && BN % 32 == 0, "v4 3x: E and BN multiples of 32");
  static constexpr int E = E_;
  static constexpr int kBlockM = 128;
  static constexpr int kBlockN = BN;
  static constexpr int kConsumerWarpgroups = 2;
  // E = 128: two producer warpgroups, one for K and one for V, each with one tile in flight (72 registers):
  // +5-8% against one holding both (session 9, device call 16). At E = 64 the consumers need more than the
  // 184 registers that leaves them (-6-9%), so one producer warpgroup loads both.
  static constexpr int kProducerWarpgroups = E_ == 128 ? 2 : 1;
  static constexpr int kThreads = 128 * (kProducerWarpgroups + kConsumerWarpgroups);
  static constexpr int kCtasPerSm = 1;
  static constexpr bool kLazyRescale = false;
  static constexpr bool kExactRescale = true;  // softmax.cuh: the rescale drift would dominate the error
  static constexpr int kTailStep = 0;
  static constexpr int kConsumerRegs = 184;
  static constexpr int kProducerRegs = E_ == 128 ? 72 : 136;
  static_assert(128 * kProducerWarpgroups * kProducerRegs + 256 * kConsumerRegs <= 65536 / kThreads / 8 * 8 * kThreads,
                "v4 3x: register budget");
  using PSmem = void;  // no persistent form
};

// 3xTF32's shared memory: Q's two halves (2 x 64 KB at E = 128), then one ring of slots of 32 KB, each holding
// either a K tile (hi + lo, K-major) or a V^T tile (hi + lo), K_j in slot use 2j and V_j in 2j + 1: 3 slots at
// E = 128 (224 KB in all), 5 at E = 64 (Q 64 KB + 160 KB). Separate K and V rings would need 2 + 2 slots at
// E = 128.
template <int E_, int BN>
struct CfgF32x3 : Cfg3x<E_, BN> {
  using Elem = float;
  using Cfg3x<E_, BN>::kBlockM;
  using Cfg3x<E_, BN>::E;
  static constexpr int kTileFloats = BN * E;  // one half of a K or V^T tile
  static constexpr int kSlots = (227 * 1024 - 2048 - 2 * kBlockM * E * 4) / (2 * kTileFloats * 4);

  struct alignas(1024) Smem {
    alignas(1024) float q_hi[kBlockM * E];
    alignas(1024) float q_lo[kBlockM * E];
    alignas(1024) float slot[kSlots][2][kTileFloats];  // [hi, lo] of a K or a V^T tile
    alignas(8) uint64_t full[kSlots];
    alignas(8) uint64_t empty[kSlots];
  };
  static constexpr int kSmemBytes = static_cast<int>(sizeof(Smem)) + 1024;
  static_assert(kSlots >= 3 && kSmemBytes <= 227 * 1024, "v4 3xTF32: shared memory");
};

// 3xF16's shared memory: every tile in fp16 halves, so a K or V slot (hi + lo) is 16 KB at both head dims, and
// after Q's halves (64 KB at E = 128, 32 at E = 64) the ring has 10 or 12 slots.
// PAD: a head dim below E, whose columns past it the loads fill with zeros; a separate kernel, because the bounds
// cost the unpadded one 6-9% at E = 64 (session 11, device call 6) and, at E = 128, 36 bytes of producer spills
// at 72 registers (none at 80).
template <int E_, int BN, bool PAD = false>
struct CfgF16x3 : Cfg3x<E_, BN> {
  using Elem = uint16_t;
  static constexpr bool kPadded = PAD;
  static constexpr int kConsumerRegs = PAD && E_ == 128 ? 176 : Cfg3x<E_, BN>::kConsumerRegs;
  static constexpr int kProducerRegs = PAD && E_ == 128 ? 80 : Cfg3x<E_, BN>::kProducerRegs;
  static_assert(128 * Cfg3x<E_, BN>::kProducerWarpgroups * kProducerRegs + 256 * kConsumerRegs <=
                    65536 / Cfg3x<E_, BN>::kThreads / 8 * 8 * Cfg3x<E_, BN>::kThreads,
                "v4 3xF16: register budget");
  using Cfg3x<E_, BN>::kBlockM;
  using Cfg3x<E_, BN>::E;
  static constexpr int kTileElems = BN * E;  // one half of a K or V tile
  static constexpr int kSlots = (227 * 1024 - 2048 - 2 * kBlockM * E * 2) / (2 * kTileElems * 2);

  struct alignas(1024) Smem {
    alignas(1024) uint16_t q_hi[kBlockM * E];
    alignas(1024) uint16_t q_lo[kBlockM * E];
    alignas(1024) uint16_t slot[kSlots][2][kTileElems];  // [hi, lo] of a K or V tile (fused K: both in one)
    int exps[kSlots];        // the slot's tile was scaled by 2^exps
    uint32_t red[4][2][4];   // warpgroup_max's buffers: producer warpgroups 0, 1, consumers 2, 3
    alignas(8) uint64_t full[kSlots];
    alignas(8) uint64_t empty[kSlots];
  };
  static constexpr int kSmemBytes = static_cast<int>(sizeof(Smem)) + 1024;
  static_assert(kSlots >= 3 && kSmemBytes <= 227 * 1024, "v4 3xF16: shared memory");
};

// What the kernel needs besides the three tensor maps.
struct Args {
  void* out;
  float* lse;  // (B, H, L) contiguous or nullptr
  int64_t o_sb, o_sh, o_sl;
  int L, S;       // S here is the last key any query can see (causal), so TMA zero-fills beyond
  int H, group;   // query heads, query heads per kv head
  int num_m;      // ceil(L / kBlockM)
  int num_items;  // num_m * B * H: the persistent kernel's work items
  int causal_offset;
  int head_group;    // the causal work order (kernel.cuh, item_at): heads per group, or 0: paired items
  int ev;            // the head dim of V and O (<= E: the tile's columns beyond it are zeros, not stored)
  float scale_log2;  // c = |scale| * log2(e) > 0 (prepare() in launch_template.cuh)
  int negate_q;      // 1: the scale was negative, the consumers flip Q's sign (kernel.cuh)
  int narrow_tail;   // 1: narrow last tiles where C::kTailStep allows (0: the A/B switch turned them off)
  int skip_max;      // 1: tiles after a row's first skip the row max where C::kSkipMax (launch_template.cuh)
  int own_tiles;     // 1: each consumer warpgroup runs only the key tiles its rows need (kernel.cuh, own_keys_end)
};

// The float32 kernel reads V with ordinary loads (to transpose it), so it also needs V itself.
struct ArgsF32 : Args {
  const float* v;  // (b, kv head) 0's first row
  int64_t v_sb, v_sh, v_sl;
};

// The 3xTF32 kernel reads all three inputs itself (it splits each value into two halves on the way
// to shared memory), so it takes no tensor maps.
struct ArgsF32x3 : Args {
  const float *q, *k, *v;
  int64_t q_sb, q_sh, q_sl, k_sb, k_sh, k_sl, v_sb, v_sh, v_sl;
};

}  // namespace flash_attn_ext::cuda::v4
