// Which scores of a warp's 16 x BN tile are visible, as one bit per accumulator element:
// bit nb*4 + c stands for S[nb][c], i.e. row g + 8*(c/2) and key nb*8 + 2t + c%2 of the tile.
// A warp classifies its tile with two votes: every bit set -> no masking work at all,
// no bit set -> the tile is skipped, else the hidden scores become -inf.
#pragma once

#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../../../common/params.h"

namespace flash_attn_ext::cuda::v3 {

template <int BN>
__host__ __device__ constexpr uint64_t full_bits() {
  return BN / 2 >= 64 ? ~uint64_t{0} : (uint64_t{1} << (BN / 2)) - 1;
}

// Sequence tails (row >= L, key >= S) and the causal rule (key <= row + offset).
template <int BN, bool CAUSAL>
__device__ __forceinline__ uint64_t bounds_bits(int64_t row0, int64_t key0, int64_t L, int64_t S, int64_t offset) {
  uint64_t bits = 0;
#pragma unroll
  for (int nb = 0; nb < BN / 8; ++nb)
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int64_t row = row0 + 8 * (c >> 1), key = key0 + nb * 8 + (c & 1);
      bool ok = row < L && key < S;
      if (CAUSAL) ok = ok && key <= row + offset;
      bits |= uint64_t{ok} << (nb * 4 + c);
    }
  return bits;
}

// Bool mask (one byte per element, nonzero = attend), read in place through its strides.
// row_ptr[r] points at the mask row of thread row r (nullptr for rows >= L).
template <int BN>
__device__ __forceinline__ uint64_t bool_mask_bits(const uint8_t* const (&row_ptr)[2], int64_t key0, int64_t S,
                                                   int64_t m_ss) {
  uint64_t bits = 0;
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
        const uint32_t two = __ldg(reinterpret_cast<const unsigned short*>(rp + key));
        b0 = two & 0xffu;
        b1 = two >> 8;
      } else {
        if (key < S) b0 = __ldg(rp + key * m_ss);
        if (key + 1 < S) b1 = __ldg(rp + (key + 1) * m_ss);
      }
      bits |= uint64_t{b0 != 0} << (nb * 4 + 2 * r);
      bits |= uint64_t{b1 != 0} << (nb * 4 + 2 * r + 1);
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

// Keys (bit nb*2 + e for key nb*8 + 2t + e) that at least one of the warp's 16 rows sees.
template <int BN>
__device__ __forceinline__ uint32_t warp_key_bits(uint64_t vis) {
  uint32_t keys = 0;
#pragma unroll
  for (int nb = 0; nb < BN / 8; ++nb)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const bool seen = ((vis >> (nb * 4 + e)) & 1) | ((vis >> (nb * 4 + 2 + e)) & 1);
      keys |= uint32_t{seen} << (nb * 2 + e);
    }
  keys |= __shfl_xor_sync(0xffffffffu, keys, 4);
  keys |= __shfl_xor_sync(0xffffffffu, keys, 8);
  keys |= __shfl_xor_sync(0xffffffffu, keys, 16);
  return keys;
}

}  // namespace flash_attn_ext::cuda::v3
