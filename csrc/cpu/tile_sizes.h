// CPU tile sizes, in one place.
#pragma once

#include <cstdint>

namespace flash_attn_ext::cpu {

// Query rows per work item: enough rows that each K/V tile is reused many
// times while it sits in L1/L2, few enough that B*H*ceil(L/64) items keep every core busy.
constexpr int64_t kCpuBlockQ = 64;
// Keys per tile: a 64 x Bc float score tile plus the K/V tiles stay in L2 (E, Ev <= 256).
constexpr int64_t kCpuBlockK = 128;

}  // namespace flash_attn_ext::cpu
