// v3 tile sizes per operand mode, head-dim bucket and query rows per warp (ROWS = 16 or 32:
// one or two m16 row blocks). kBlockM / ROWS warps run per CTA; kBlockN keys are staged per
// pipeline step (kPrefetch + 1 stages, or one stage each for K and V where kSplitKV). Register use grows
// with the bucket and ROWS (O is ROWS x HD floats per warp, S is ROWS x kBlockN), shared memory with
// (kBlockM + 2 x stages x kBlockN) x HD elements.
#pragma once

namespace flash_attn_ext::cuda::v3 {

// How Q*K^T and P*V run on the tensor cores.
enum class Mode : int { kF16 = 0, kBF16 = 1, kTf32 = 2, kTf32x3 = 3 };

__host__ __device__ constexpr bool is_fp32(Mode m) { return m == Mode::kTf32 || m == Mode::kTf32x3; }

// Head-dim buckets: max(E, Ev) is rounded up to one of these and padded with zeros.
constexpr int kBuckets[] = {32, 64, 96, 128, 160, 192, 256};

// Rows per warp a ROWS=32 variant exists for: 2 x HD/8 x 4 accumulator registers of O leave
// room for S only up to 128 (E=160 would need 160 + S + Q > 255). Above it ROWS=32 runs ROWS=16.
constexpr int kMaxHdRows32 = 128;

// Default rows per warp when FLASH_ATTN_EXT_V3_ROWS is unset (launch.cu reads it per call).
// 32 up to 128: each K/V fragment read by ldmatrix feeds two mmas (predicted, NOTES_v3.md
// step 3; flip to 16 per bucket if the H200 A/B says otherwise).
__host__ __device__ constexpr int default_rows(bool fp32, int hd) { return !fp32 && hd <= kMaxHdRows32 ? 32 : 16; }

template <Mode M, int HD, int ROWS = 16>
struct TileSizes;

// 16-bit operands, 16 rows per warp. q_in_regs: Q's fragments stay in registers for the
// whole KV loop (saves one ldmatrix per k-step) where the O accumulator leaves room for them.
template <int HD>
struct TileSizes16 {
  // Up to 128: 4 warps, so two CTAs share an SM and one's softmax overlaps the other's
  // products (measured on the H200, E=128: 212 -> 222 TFLOP/s against one CTA of 8 warps).
  // Above 128 also 4 warps, but only with K and V in one stage each (kSplitKV below): two stages
  // of 64-key tiles beside Q fit one CTA per SM, and one CTA of 4 warps lost to one of 8 (E=256:
  // 178 vs 240 TFLOP/s in step 2); one stage each fits two CTAs in the SM, FlashAttention-2's
  // 64 x 64 tile at E=256 on the H100/H200 (NOTES_v3.md step 11).
  static constexpr int kBlockM = 64;
  // Small heads: S (16 x 128 floats = 64 registers) still fits; wide key tiles halve the loop overhead.
  // From 96 up O grows: 64 keys keep S at 32 registers.
  static constexpr int kBlockN = HD <= 64 ? 128 : 64;
  static constexpr bool kQInRegs = HD <= 128;          // above 128, Q fragments (HD/4 registers) would spill
  // One stage each for K and V, loaded in turn: V_j under Q K_j^T, K_{j+1} under tile j's softmax and P V
  // (two barriers per tile instead of one). Only where two stages would keep two CTAs off an SM.
  static constexpr bool kSplitKV = HD > 128;
  static constexpr int kMinBlocks = kSplitKV ? 2 : 1;  // __launch_bounds__: two CTAs of 128 threads, 255 registers
  static constexpr bool kPipe = false;  // kernel_rows32.cuh's pipelined loop: 32 rows per warp only
  static constexpr int kPrefetch = 1;
};

// 16-bit operands, 32 rows per warp (two m16 row blocks share every K and V fragment: half the
// ldmatrix bytes per mma of the 16-row tile). FlashAttention-2's sm80 shape at E=128 (128 x 64, 4 warps).
template <int HD>
struct TileSizes16R32 {
  static_assert(HD <= kMaxHdRows32, "32 rows per warp: O alone takes HD registers per thread");
  // The pipelined key loop (kernel_rows32.cuh): Q*K^T of the next tile goes out before this tile's softmax, so
  // a warp keeps its tensor pipe busy through its own softmax. Two score tiles are live beside O, which fits
  // only while O is small: up to E = 64 (+18% at E = 32, +0-5% at E = 64; at E = 128 it needed 32-key tiles
  // and lost 6-9%; NOTES_v3.md step 10).
  static constexpr bool kPipe = HD <= 64;
  // 4 warps x 32 rows: 128-row CTAs, two per SM (8 warps).
  static constexpr int kBlockM = 128;
  // 64 keys: S of 32 x 64 is 64 registers beside O's HD; pipelined, two score tiles beside O's 64 (unpipelined,
  // E = 64 ran 128-key tiles, FA2's there, 0-3% behind the pipelined loop at N >= 4096).
  static constexpr int kBlockN = 64;
  // Tiles loaded ahead (a ring of kPrefetch + 1 stages): a pipelined step reads tile j's V and tile j + 1's K,
  // with tile j + 2 loading.
  static constexpr int kPrefetch = kPipe ? 2 : 1;
  // Q of both row blocks would be HD/2 registers: kept only at 32; from 64 up read by ldmatrix per k-step, as
  // FA2 does (E=64 with Q in registers spilled 12 bytes, from shared memory none).
  static constexpr bool kQInRegs = HD <= 32;
  static constexpr bool kSplitKV = false;
  // Two CTAs of 128 threads per SM: 65536 / 256 threads = 255 registers, what the 32-row tile needs.
  static constexpr int kMinBlocks = 2;
};

template <int HD> struct TileSizes<Mode::kF16, HD, 16> : TileSizes16<HD> {};
template <int HD> struct TileSizes<Mode::kBF16, HD, 16> : TileSizes16<HD> {};
template <int HD> struct TileSizes<Mode::kF16, HD, 32> : TileSizes16R32<HD> {};
template <int HD> struct TileSizes<Mode::kBF16, HD, 32> : TileSizes16R32<HD> {};

// float32 operands: tiles cost twice the shared memory, and 3xTF32 needs temporaries for
// the big/small halves, so key tiles are narrower and Q stays in shared memory.
template <int HD>
struct TileSizes32 {
  // 8 warps measured slightly ahead of 4 at E=128 (3xTF32 36.0 vs 34.7 TFLOP/s); above 128,
  // 64 rows keep Q + 2 stages of K/V under 227 KB.
  static constexpr int kBlockM = HD <= 128 ? 128 : 64;
  static constexpr int kBlockN = HD <= 64 ? 64 : 32;    // fp32 K/V stages: 2 x 2 x 32 x HD x 4 bytes
  static constexpr bool kQInRegs = false;
  static constexpr int kMinBlocks = 1;
  static constexpr bool kPipe = false;  // kernel_rows32.cuh's pipelined loop: 32 rows per warp only
  static constexpr int kPrefetch = 1;
  static constexpr bool kSplitKV = false;
};

// float32 modes have 16 rows per warp only.
template <int HD> struct TileSizes<Mode::kTf32, HD, 16> : TileSizes32<HD> {};
template <int HD> struct TileSizes<Mode::kTf32x3, HD, 16> : TileSizes32<HD> {};

}  // namespace flash_attn_ext::cuda::v3
