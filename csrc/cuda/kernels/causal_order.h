// The order of causal work items, shared by v3's and v4's one-item grids and v4's persistent kernels.
// Causal query blocks differ in length (block m of a head sees about m + 1 key tiles), so the order in
// which the grid takes them decides how its tail balances and whose K/V sit in L2 at the same time
// (benchmarks/NOTES_v4.md step 13).
#pragma once

#include <cstdint>

#include "env_switch.h"

namespace flash_attn_ext::cuda {

// Item `it` of n_bh * num_m: heads in groups of `group`, each group longest first (the last query
// block of every head in the group, then the ones before), so a group ends on short items and no
// long item starts just before the grid runs dry. Sets bh (b * H + h) and the query block m.
template <typename I>
__host__ __device__ __forceinline__ void grouped_longest_first(I it, I num_m, I n_bh, I group, I& bh, I& m) {
  const I per_group = group * num_m, first = it / per_group * group, r = it % per_group;
  const I heads = n_bh - first < group ? n_bh - first : group;
  m = num_m - 1 - r / heads;
  bh = first + r % heads;
}

// The group size a launcher passes to grouped_longest_first for n_bh = B * H heads: `fallback` (its own
// choice, e.g. heads_in_l2 below; v4's persistent kernels pass 0 for their paired order) unless
// FLASH_ATTN_EXT_HEAD_GROUP=n forces n (A/B runs), within 0 .. n_bh.
inline int64_t head_group_for(int64_t n_bh, int64_t fallback) {
  const int64_t forced = env_int("FLASH_ATTN_EXT_HEAD_GROUP", 0), g = forced > 0 ? forced : fallback;
  const int64_t heads = n_bh > 0 ? n_bh : 1;
  return g < 0 ? 0 : (g > heads ? heads : g);
}

// A one-item grid's group: the query heads whose K and V (kv_head_bytes per KV head, read by q_per_kv
// query heads) fit in 16 MB, a third of the H200's L2, and at most 8. Longest first over all heads lost
// up to 16% to L2 misses in v4; 64 heads of 0.5 MB at E = 256, N = 512 lost 6% to 4 (NOTES_v4.md step 13).
inline int64_t heads_in_l2(int64_t kv_head_bytes, int64_t q_per_kv) {
  const int64_t g = (int64_t(16) << 20) * q_per_kv / (kv_head_bytes > 0 ? kv_head_bytes : 1);
  return g < 1 ? 1 : (g > 8 ? 8 : g);
}

}  // namespace flash_attn_ext::cuda
