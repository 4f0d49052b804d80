// What a v3 kernel receives: the call's params plus a few facts the launcher derives once
// per call on the host (no device work, no allocation: graph capture stays legal).
#pragma once

#include "../../../common/params.h"

namespace flash_attn_ext::cuda::v3 {

struct V3Args {
  FwdParams p;
  int64_t n_qblocks;   // query blocks per (batch, head)
  int64_t head_group;  // causal: heads per group of the longest-first order (causal_order.h)
  // 16-byte cp.async / vector stores are legal: base pointer 16-byte aligned, every outer
  // stride and the head dim a multiple of 16 bytes. Otherwise the copies go element-wise.
  bool q_vec, k_vec, v_vec, o_vec;
  // Scores are multiplied by scale*log2(e) before the row max (float masks add their bias
  // in those units; a scale <= 0 breaks the max-of-raw-scores trick). Otherwise the scale
  // folds into the exp2 argument: one FFMA per score.
  bool prescale;
};

}  // namespace flash_attn_ext::cuda::v3
