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

// A (B, heads, rows, E) view as a 4-D map, E innermost, boxes of 64 x box_rows with 128-byte
// swizzle (as v4's). Strides of size-1 dims are never used but must satisfy the encoder, so they
// are replaced by the packed value.
template <typename T>
bool make_map(CUtensorMap* map, const void* base, int64_t E, int64_t rows, int64_t heads, int64_t batch,
              int64_t s_row, int64_t s_head, int64_t s_batch, uint32_t box_rows) {
  const int64_t es = sizeof(T);
  if (rows == 1) s_row = E;
  if (heads == 1) s_head = s_row * rows;
  if (batch == 1) s_batch = s_head * heads;
  const uint64_t dims[4] = {static_cast<uint64_t>(E), static_cast<uint64_t>(rows), static_cast<uint64_t>(heads),
                            static_cast<uint64_t>(batch)};
  const uint64_t strides[3] = {static_cast<uint64_t>(s_row * es), static_cast<uint64_t>(s_head * es),
                               static_cast<uint64_t>(s_batch * es)};
  const uint32_t box[4] = {kChunk, box_rows, 1, 1};
  const CUtensorMapDataType dt =
      std::is_same<T, __nv_bfloat16>::value ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  return tma::encode_tiled(map, dt, 4, base, dims, strides, box, CU_TENSOR_MAP_SWIZZLE_128B);
}

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
  if (!make_map<T>(&tq, p.q, E, p.L, p.H, p.B, p.q_sl, p.q_sh, p.q_sb, kBlockM) ||
      !make_map<T>(&tdo, bp.dout, E, p.L, p.H, p.B, bp.do_sl, bp.do_sh, bp.do_sb, kBlockM) ||
      !make_map<T>(&tk, p.k, E, s_map, p.Hkv, p.B, p.k_sl, p.k_sh, p.k_sb, kBlockN) ||
      !make_map<T>(&tv, p.v, E, s_map, p.Hkv, p.B, p.v_sl, p.v_sh, p.v_sb, kBlockN))
    return false;
  auto kernel = bwdwg_kernel<T, E, CAUSAL>;
  // A function attribute, not a stream operation: legal during graph capture.
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmemBytes);
  const int64_t blocks = static_cast<int64_t>(a.n_kblocks) * p.B * p.Hkv;
  kernel<<<static_cast<unsigned>(blocks), kThreads, C::kSmemBytes, stream>>>(tq, tk, tv, tdo, a);
  return true;
}

}  // namespace flash_attn_ext::cuda::bwdwg
