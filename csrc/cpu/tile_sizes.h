// CPU tile sizes, in one place.
#pragma once

#include <cstdint>

namespace flash_attn_ext::cpu {

// Query rows per work item: 64 = one panel of 4 AVX-512 vectors, so a score micro-kernel keeps
// a whole query block in its accumulators; B*H*ceil(L/64) items keep every core busy.
constexpr int64_t kCpuBlockQ = 64;
// Keys per tile: 128 halves the per-tile work (O rescale, softmax bookkeeping) against 64
// (measured 5% faster, benchmarks/cpu_kernel_notes.md), while the 128 x 64 score tile (32 KiB)
// and the K/V tiles still sit in L1/L2; 256 gained nothing more.
constexpr int64_t kCpuBlockK = 128;

}  // namespace flash_attn_ext::cpu
