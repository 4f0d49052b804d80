// CPU kernels: entry points called by csrc/cpu/api.cpp, which owns threading
// and memory. Kernel files include no torch headers.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../common/params.h"

namespace flash_attn_ext::cpu {

// The reference: materialises the (L, S) score matrix of each (batch, head) in
// `scores` (accumulator type: double for float64 inputs, float otherwise), then
// softmax and a product with V. Handles heads [bh_begin, bh_end) of the B*H.
// `scores` holds (bh_end - bh_begin) * L * S accumulator elements.
void naive_forward(const FwdParams& p, int64_t bh_begin, int64_t bh_end, void* scores);

// The tiled flash forward: one work item is kCpuBlockQ query rows of one
// (b, h); items go head by head, the costliest causal blocks of each head
// first (see work_item in flash_forward_vec.h), so hand them out dynamically
// in order. `scratch` holds flash_forward_scratch_bytes(p) bytes, private to
// the calling thread.
int64_t flash_forward_num_work(const FwdParams& p);
size_t flash_forward_scratch_bytes(const FwdParams& p);
void flash_forward(const FwdParams& p, int64_t work_begin, int64_t work_end, void* scratch);

// Which vector ISA flash_forward runs with on this machine ("avx512", "avx2" or
// "portable"); chosen once at run time from the CPU's features.
const char* flash_forward_isa();

}  // namespace flash_attn_ext::cpu
