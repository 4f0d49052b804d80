// v3 tile sizes per operand mode and head-dim bucket. Each warp owns 16 query rows, so
// kBlockM / 16 warps run per CTA; kBlockN keys are staged per pipeline step (2 stages).
// Register use grows with the bucket (O is 16 x HD floats per warp, S is 16 x kBlockN),
// shared memory with (kBlockM + 4 kBlockN) x HD elements.
#pragma once

namespace flash_attn_ext::cuda::v3 {

// How Q*K^T and P*V run on the tensor cores.
enum class Mode : int { kF16 = 0, kBF16 = 1, kTf32 = 2, kTf32x3 = 3 };

__host__ __device__ constexpr bool is_fp32(Mode m) { return m == Mode::kTf32 || m == Mode::kTf32x3; }

// Head-dim buckets: max(E, Ev) is rounded up to one of these and padded with zeros.
constexpr int kBuckets[] = {32, 64, 96, 128, 160, 192, 256};

template <Mode M, int HD>
struct TileSizes;

// 16-bit operands. q_in_regs: Q's fragments stay in registers for the whole KV loop
// (saves one ldmatrix per k-step) where the O accumulator leaves room for them.
template <int HD>
struct TileSizes16 {
  // Up to 128: 4 warps, so two CTAs share an SM and one's softmax overlaps the other's
  // products (measured on the H200, E=128: 212 -> 222 TFLOP/s against one CTA of 8 warps).
  // Above 128 the K/V stages need so much shared memory that only one CTA fits: 8 warps
  // (E=256: 240 TFLOP/s with 8 warps, 178 with 4).
  static constexpr int kBlockM = HD <= 128 ? 64 : 128;
  // Small heads: S (16 x 128 floats = 64 registers) still fits; wide key tiles halve the loop overhead.
  // From 96 up O grows: 64 keys keep S at 32 registers.
  static constexpr int kBlockN = HD <= 64 ? 128 : 64;
  static constexpr bool kQInRegs = HD <= 128;          // above 128, Q fragments (HD/4 registers) would spill
};

template <int HD> struct TileSizes<Mode::kF16, HD> : TileSizes16<HD> {};
template <int HD> struct TileSizes<Mode::kBF16, HD> : TileSizes16<HD> {};

// float32 operands: tiles cost twice the shared memory, and 3xTF32 needs temporaries for
// the big/small halves, so key tiles are narrower and Q stays in shared memory.
template <int HD>
struct TileSizes32 {
  // 8 warps measured slightly ahead of 4 at E=128 (3xTF32 36.0 vs 34.7 TFLOP/s); above 128,
  // 64 rows keep Q + 2 stages of K/V under 227 KB.
  static constexpr int kBlockM = HD <= 128 ? 128 : 64;
  static constexpr int kBlockN = HD <= 64 ? 64 : 32;    // fp32 K/V stages: 2 x 2 x 32 x HD x 4 bytes
  static constexpr bool kQInRegs = false;
};

template <int HD> struct TileSizes<Mode::kTf32, HD> : TileSizes32<HD> {};
template <int HD> struct TileSizes<Mode::kTf32x3, HD> : TileSizes32<HD> {};

}  // namespace flash_attn_ext::cuda::v3
