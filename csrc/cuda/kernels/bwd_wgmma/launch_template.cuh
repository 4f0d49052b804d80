// run_bwdwg<BF16, E, CAUSAL>: builds the four tensor maps of one backward call and launches the
// Hopper backward kernel. Included by the explicit instantiations csrc/cuda/instantiations/bwdwg_*.cu.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../../../common/params.h"
#include "../../ptx/tma_host.h"
#include "kernel.cuh"
#include "run.h"

namespace flash_attn_ext::cuda::bwdwg {

// q (B, H, L, E), k/v (B, Hkv, S, E), dout (B, H, L, E), lse/delta (B, H, L)
//   -> dk, dv (B, Hkv, S, E) written, dq_accum (B, H, L, E) float32 (zeroed by the caller) += dQ.
// Grid: ceil(S / 128) * B * Hkv CTAs of 384 threads (1-D; the launcher checked it fits 2^31 - 1).
template <bool BF16, int E, bool CAUSAL>
bool run_bwdwg(const BwdParams& bp, float* dq_accum, cudaStream_t stream) {
  using T = std::conditional_t<BF16, __nv_bfloat16, __half>;
  using C = Cfg<E>;
  const FwdParams& p = bp.fwd;
  Args a{};
  a.lse = p.lse;
  a.delta = static_cast<const float*>(bp.delta);
  a.dq_accum = dq_accum;
  a.dk = bp.dk;
  a.dv = bp.dv;
  a.L = static_cast<int>(p.L);
  a.S = static_cast<int>(p.S);
  a.H = static_cast<int>(p.H);
  a.Hkv = static_cast<int>(p.Hkv);
  a.group = static_cast<int>(p.group);
  a.n_kblocks = static_cast<int>((p.S + kBlockN - 1) / kBlockN);
  a.causal_offset = static_cast<int>(p.causal_offset);
  a.scale = p.scale;
  a.scale_log2 = p.scale_log2;
  // Keys no query can see (causal: key >= L + causal_offset) are left outside the K/V maps, as in
  // v4's forward: the TMA fills them with zeros, so NaN/Inf stored there cannot reach dQ through
  // 0 * NaN. Their dK/dV rows are still written (zeros).
  int64_t s_map = p.S;
  if (CAUSAL) s_map = std::min<int64_t>(p.S, p.L + p.causal_offset);
  s_map = std::max<int64_t>(s_map, 1);
  CUtensorMap tq, tk, tv, tdo;
  if (!tma::make_head_map<T>(&tq, p.q, E, p.L, p.H, p.B, p.q_sl, p.q_sh, p.q_sb, kBlockM) ||
      !tma::make_head_map<T>(&tdo, bp.dout, E, p.L, p.H, p.B, bp.do_sl, bp.do_sh, bp.do_sb, kBlockM) ||
      !tma::make_head_map<T>(&tk, p.k, E, s_map, p.Hkv, p.B, p.k_sl, p.k_sh, p.k_sb, kBlockN) ||
      !tma::make_head_map<T>(&tv, p.v, E, s_map, p.Hkv, p.B, p.v_sl, p.v_sh, p.v_sb, kBlockN))
    return false;
  auto kernel = bwdwg_kernel<T, E, CAUSAL>;
  // A function attribute, not a stream operation: legal during graph capture.
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmemBytes);
  const int64_t blocks = static_cast<int64_t>(a.n_kblocks) * p.B * p.Hkv;
  kernel<<<static_cast<unsigned>(blocks), kThreads, C::kSmemBytes, stream>>>(tq, tk, tv, tdo, a);
  return true;
}

}  // namespace flash_attn_ext::cuda::bwdwg
