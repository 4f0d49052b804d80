// What the portable dispatcher (flash_forward.cpp) and the per-ISA builds of the
// vectorised float kernel (flash_forward_{avx512,avx2,generic}.cpp) share.
//
// The dispatcher lays out the per-thread scratch and picks the ISA; the ISA
// files only compute, so no allocation or std template ever runs with a wider
// instruction set than the CPU in hand.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../common/params.h"

namespace flash_attn_ext::cpu {

// Byte offsets into one thread's scratch, each 64-byte aligned. Sizes in floats:
struct VecScratch {
  size_t qt = 0;         // E x Br: queries transposed and scaled by scale*log2(e)
  size_t kc = 0;         // Bc x E: one key tile converted to float (half/bf16 inputs)
  size_t vc = 0;         // Bc x ld_v: one value tile as float, rows padded to whole vectors
  size_t st = 0;         // Bc x Br: scores, then probabilities, key-major
  size_t bias = 0;       // Bc x Br: the mask tile in log2 units (masked calls)
  size_t mask_rows = 0;  // Br x Bc: the same tile row-major, before its transpose (masked calls)
  size_t o = 0;          // Br x ld_v: unnormalised output rows
  size_t stats = 0;      // 3 x Br: running max, running sum, this tile's rescale factor
  size_t total = 0;
  int64_t ld_v = 0;  // Ev rounded up to a whole number of vectors of the widest ISA
};

VecScratch vec_scratch_layout(const FwdParams& p);

// Work items [work_begin, work_end) of flash_forward_num_work(p), for float32, float16
// and bfloat16 inputs. One function per instruction set; call only what the CPU has.
void flash_forward_avx512(const FwdParams& p, const VecScratch& s, int64_t work_begin, int64_t work_end,
                          void* scratch);
void flash_forward_avx2(const FwdParams& p, const VecScratch& s, int64_t work_begin, int64_t work_end,
                        void* scratch);
void flash_forward_generic(const FwdParams& p, const VecScratch& s, int64_t work_begin, int64_t work_end,
                           void* scratch);

// The float64 path: scalar, tiled the same way, double accumulation.
size_t flash_forward_f64_scratch_bytes(const FwdParams& p);
void flash_forward_f64(const FwdParams& p, int64_t work_begin, int64_t work_end, void* scratch);

// Work item w -> (batch, head, query block): head by head, and within a head the query blocks
// last to first (under a causal mask the last rows see the most keys). Threads taking items
// from a shared counter then work on the same head's K/V, which stays in cache, and end on
// the cheapest items, so they finish together.
struct WorkItem {
  int64_t b, h, qb;
};
inline WorkItem work_item(const FwdParams& p, int64_t w, int64_t q_blocks) {
  const int64_t bh = w / q_blocks, qb = q_blocks - 1 - w % q_blocks;
  return {bh / p.H, bh % p.H, qb};
}

}  // namespace flash_attn_ext::cpu
