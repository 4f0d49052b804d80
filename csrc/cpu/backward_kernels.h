// CPU backward kernels (FlashAttention-2's backward, recomputing P from the saved LSE):
// the scalar two-pass loop (backward.cpp, kept for float64) and the vectorised one-pass
// kernel (flash_backward*.cpp) for float32, float16 and bfloat16.
// Called by csrc/cpu/api.cpp, which owns threading; no torch headers here.
#pragma once

#include <cstdint>

#include "../common/params.h"

namespace flash_attn_ext::cpu {

// The scalar float64 backward, in two passes. Both passes write disjoint outputs, so
// there are no atomics and the result is bitwise reproducible for any thread count.
//  - pass 1, per (b, kv head, key block): dK and dV of those keys, summed over the
//    query heads of the GQA group and over every query block that sees them;
//  - pass 2, per (b, head, query block): dQ of those rows (and dS for a mask gradient).
int64_t backward_kv_num_work(const BwdParams& p);
int64_t backward_q_num_work(const BwdParams& p);
size_t backward_scratch_bytes(const BwdParams& p);
void backward_kv(const BwdParams& p, int64_t work_begin, int64_t work_end, void* scratch);
void backward_q(const BwdParams& p, int64_t work_begin, int64_t work_end, void* scratch);

// The vectorised backward: work items (b, kv head, key chunk) each write the dK, dV rows
// of their keys and their own float dQ partial (backward_vec_dq_part_floats(p) floats in
// all, no initialisation needed); backward_vec_finish_dq then sums the partials of rows
// [row_begin, row_end) of the B*H*L query rows in a fixed order into dq.
int64_t backward_vec_num_work(const BwdParams& p);
size_t backward_vec_scratch_bytes(const BwdParams& p);
int64_t backward_vec_dq_part_floats(const BwdParams& p);
void backward_vec(const BwdParams& p, int64_t w, void* scratch, float* dq_part);
void backward_vec_finish_dq(const BwdParams& p, const float* dq_part, int64_t row_begin, int64_t row_end);

}  // namespace flash_attn_ext::cpu
