// Which scores of a warp's 16 x BN tile are visible, as one bit per accumulator element:
// bit nb*4 + c stands for S[nb][c], i.e. row g + 8*(c/2) and key nb*8 + 2t + c%2 of the tile.
// A warp classifies its tile with two votes: every bit set -> no masking work at all,
// no bit set -> the tile is skipped, else the hidden scores become -inf.
#pragma once

#include <cstdint>
#include <type_traits>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../../../common/params.h"

namespace flash_attn_ext::cuda::v3 {

// 32-bit words where they suffice: 64-bit shifts and tests cost two instructions each.
template <int BN>
using Bits = std::conditional_t<(BN / 2 > 32), uint64_t, uint32_t>;

template <int BN>
__host__ __device__ constexpr Bits<BN> full_bits() {
  return BN / 2 >= 8 * sizeof(Bits<BN>) ? ~Bits<BN>{0} : (Bits<BN>{1} << (BN / 2)) - 1;
}

// Sequence tails (row >= L, key >= S) and the causal rule (key <= row + offset).
template <int BN, bool CAUSAL>
__device__ __forceinline__ Bits<BN> bounds_bits(int64_t row0, int64_t key0, int64_t L, int64_t S, int64_t offset) {
  // In 32-bit, relative to key0: keys visible to row r are those below min(S, r + offset + 1).
  int end[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t row = row0 + 8 * r;
    int64_t e = row < L ? S - key0 : 0;
    if (CAUSAL && row + offset + 1 - key0 < e) e = row + offset + 1 - key0;
    end[r] = static_cast<int>(e < 0 ? 0 : (e > BN ? BN : e));
  }
  Bits<BN> bits = 0;
#pragma unroll
  for (int nb = 0; nb < BN / 8; ++nb)
#pragma unroll
    for (int c = 0; c < 4; ++c) bits |= Bits<BN>{nb * 8 + (c & 1) < end[c >> 1]} << (nb * 4 + c);
  return bits;
}

// Bool mask (one byte per element, nonzero = attend), read in place through its strides.
// row_ptr[r] points at the mask row of thread row r (nullptr for rows >= L).
template <int BN>
__device__ __forceinline__ Bits<BN> bool_mask_bits(const uint8_t* const (&row_ptr)[2], int64_t key0, int64_t S,
                                                    int64_t m_ss) {
  Bits<BN> bits = 0;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const uint8_t* rp = row_ptr[r];
    if (rp == nullptr) continue;
    const bool pairs = m_ss == 1 && (reinterpret_cast<uintptr_t>(rp) & 1) == 0;  // key0 + 2t is even
#pragma unroll
    for (int nb = 0; nb < BN / 8; ++nb) {
      const int64_t key = key0 + nb * 8;
      uint32_t b0 = 0, b1 = 0;
      if (pairs && key + 1 < S) {
        // torch bools are bytes 0/1: bit 0 and bit 8 of the pair are the two flags.
        const uint32_t two = __ldg(reinterpret_cast<const unsigned short*>(rp + key));
        bits |= Bits<BN>((two & 1u) | ((two >> 7) & 2u)) << (nb * 4 + 2 * r);
        continue;
      }
      if (key < S) b0 = __ldg(rp + key * m_ss);
      if (key + 1 < S) b1 = __ldg(rp + (key + 1) * m_ss);
      bits |= Bits<BN>{b0 != 0} << (nb * 4 + 2 * r);
      bits |= Bits<BN>{b1 != 0} << (nb * 4 + 2 * r + 1);
    }
  }
  return bits;
}

// One element of a float mask, as float (float64 masks are rounded; -inf stays -inf).
__device__ __forceinline__ float load_bias(const void* mask, int64_t off, ScalarKind dt) {
  switch (dt) {
    case ScalarKind::kFloat16: return __half2float(__ldg(static_cast<const __half*>(mask) + off));
    case ScalarKind::kBFloat16: return __bfloat162float(__ldg(static_cast<const __nv_bfloat16*>(mask) + off));
    case ScalarKind::kFloat64: return static_cast<float>(__ldg(static_cast<const double*>(mask) + off));
    default: return __ldg(static_cast<const float*>(mask) + off);
  }
}

// Keys that at least one of the warp's 16 rows sees, at bit nb*4 + e for key nb*8 + 2t + e
// (the row-g bit positions; the row g + 8 bits are folded in and cleared).
template <int BN>
__device__ __forceinline__ Bits<BN> warp_key_bits(Bits<BN> vis) {
  constexpr Bits<BN> kRowG = static_cast<Bits<BN>>(0x3333333333333333ull);
  Bits<BN> keys = (vis | (vis >> 2)) & kRowG;
  keys |= __shfl_xor_sync(0xffffffffu, keys, 4);
  keys |= __shfl_xor_sync(0xffffffffu, keys, 8);
  keys |= __shfl_xor_sync(0xffffffffu, keys, 16);
  return keys;
}

}  // namespace flash_attn_ext::cuda::v3
