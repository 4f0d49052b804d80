// What the backward kernels receive: the call's BwdParams plus facts the launcher derives
// once on the host (no device work, no allocation: graph capture stays legal).
#pragma once

#include <cstdint>

#include "../../../common/params.h"

namespace flash_attn_ext::cuda::bwd {

enum class BwdVariant : int { kV4, kV5, kV5x2 };

struct BwdArgs {
  BwdParams p;
  // float32 (B, H, L, E) contiguous, zeroed by the host: dQ's atomic accumulator. nullptr in
  // deterministic mode, where the Q-major dQ kernel writes p.dq directly.
  float* dq_accum = nullptr;
  int64_t n_kblocks = 0;  // key blocks per (batch, kv head): the dK/dV kernel's CTAs per head
  int64_t n_qblocks = 0;  // query blocks per (batch, head): the dQ kernel's CTAs per head
  // 16-byte cp.async is legal: base pointer 16-byte aligned, every outer stride and the head
  // dim a whole number of 16 bytes. Otherwise the tile copies go element by element.
  bool q_vec = false, k_vec = false, v_vec = false, do_vec = false;
  bool dq_vec4 = false;  // E % 4 == 0: dQ rows take 16-byte reductions
  // Which dK/dV kernel runs (FLASH_ATTN_EXT_BWD_VARIANT): dkdv_v5_kernel.cuh (v5, the default;
  // v5x2 its two-CTA form) or dkdv_kernel.cuh (v4, the rung below). Read by the host launcher only.
  BwdVariant variant = BwdVariant::kV5;
};

}  // namespace flash_attn_ext::cuda::bwd
