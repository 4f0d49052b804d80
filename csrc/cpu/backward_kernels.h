// CPU backward kernels (FlashAttention-2's backward, recomputing P from the saved LSE).
// Called by csrc/cpu/api.cpp, which owns threading; no torch headers here.
#pragma once

#include <cstdint>

#include "../common/params.h"

namespace flash_attn_ext::cpu {

// Work for the two passes of the backward. Both passes write disjoint outputs, so
// there are no atomics and the result is bitwise reproducible for any thread count.
//  - pass 1, per (b, kv head, key block): dK and dV of those keys, summed over the
//    query heads of the GQA group and over every query block that sees them;
//  - pass 2, per (b, head, query block): dQ of those rows (and dS for a mask gradient).
int64_t backward_kv_num_work(const BwdParams& p);
int64_t backward_q_num_work(const BwdParams& p);
size_t backward_scratch_bytes(const BwdParams& p);
void backward_kv(const BwdParams& p, int64_t work_begin, int64_t work_end, void* scratch);
void backward_q(const BwdParams& p, int64_t work_begin, int64_t work_end, void* scratch);

}  // namespace flash_attn_ext::cpu
