// What the backward's portable front (flash_backward.cpp) and its per-ISA builds
// (flash_backward_{avx512,avx2,generic}.cpp) share: the scratch layout, the split of
// the keys into chunks, and one entry point per instruction set.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../common/params.h"

namespace flash_attn_ext::cpu {

// Byte offsets into one thread's scratch, each 64-byte aligned. Sizes in floats:
struct BwdScratch {
  size_t qr = 0;         // Br x ld_e: the query block row-major, scaled by scale*log2(e), zero-padded
  size_t qt = 0;         // ld_e x Br: the same transposed (queries in the lanes)
  size_t dor = 0;        // Br x ld_v: the output gradient block row-major, zero-padded
  size_t dot = 0;        // ld_v x Br: the same transposed
  size_t kc = 0;         // Bc x ld_e: the key tile as float (when it cannot be read in place)
  size_t vc = 0;         // Bc x ld_v: the value tile as float (likewise)
  size_t st = 0;         // Bc x Br: scores, then probabilities P, key-major
  size_t dp = 0;         // Bc x Br: dP, then dS, key-major
  size_t bias = 0;       // Bc x Br: the mask tile in log2 units (masked calls)
  size_t mask_rows = 0;  // Br x Bc: the same tile row-major, before its transpose (masked calls)
  size_t dk = 0;         // Bc x ld_e: dK of the key tile, unscaled
  size_t dv = 0;         // Bc x ld_v: dV of the key tile
  size_t rowstats = 0;   // 2 x Br: lse in log2 units (+inf past the rows / for empty rows), D
  size_t total = 0;
  int64_t ld_e = 0, ld_v = 0;  // E, Ev rounded up to whole vectors of the widest ISA
};

BwdScratch bwd_scratch_layout(const FwdParams& p);

// The keys of each (b, kv head) are dealt into `chunks` chunks, key block kb to chunk
// kb % chunks (so causal chunks cost about the same). Work item w is chunk w % chunks of
// (b, kv head) w / chunks. It owns the dK, dV rows of its keys and a private dQ partial
// sum over its keys for every query row of the group's heads, at
// dq_part + ((chunk * B + b) * H + h) * L * ld_e. The chunk count depends on the shape
// only, so the sums are the same for any number of threads.
void flash_backward_avx512(const BwdParams& bp, const BwdScratch& s, int64_t chunks, int64_t w, void* scratch,
                           float* dq_part);
void flash_backward_avx2(const BwdParams& bp, const BwdScratch& s, int64_t chunks, int64_t w, void* scratch,
                         float* dq_part);
void flash_backward_generic(const BwdParams& bp, const BwdScratch& s, int64_t chunks, int64_t w, void* scratch,
                            float* dq_part);

}  // namespace flash_attn_ext::cpu
