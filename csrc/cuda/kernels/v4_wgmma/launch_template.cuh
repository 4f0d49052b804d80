// run_v4<T, E, CAUSAL>: builds the three tensor maps of one call and launches the kernel.
// Included by the explicit instantiations in csrc/cuda/instantiations/v4_*.cu.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "../../../common/params.h"
#include "../../ptx/tma_host.h"
#include "kernel.cuh"

namespace flash_attn_ext::cuda::v4 {

// A (B, heads, rows, E) view as a 4-D map, E innermost, boxes of 64 x kRows x 1 x 1 with
// 128-byte swizzle. Strides of size-1 dims are irrelevant to the data but must still satisfy
// the encoder (multiples of 16 bytes), so they are replaced by the packed value.
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

// Builds the maps for tile shape C and launches; false (nothing launched) if a tensor map
// cannot be encoded.
template <typename T, class C, bool CAUSAL>
bool run_cfg(const FwdParams& p, cudaStream_t stream) {
  Args a{};
  a.out = p.out;
  a.lse = p.lse;
  a.o_sb = p.o_sb;
  a.o_sh = p.o_sh;
  a.o_sl = p.o_sl;
  a.L = static_cast<int>(p.L);
  a.H = static_cast<int>(p.H);
  a.group = static_cast<int>(p.group);
  a.causal_offset = static_cast<int>(p.causal_offset);
  a.scale_log2 = p.scale_log2;
  a.num_m = static_cast<int>((p.L + C::kBlockM - 1) / C::kBlockM);
  // Keys no query can see are left outside the K/V maps: the TMA fills them with zeros, so
  // NaN/Inf stored there cannot reach the output through 0 * NaN.
  int64_t s_eff = p.S;
  if (CAUSAL) s_eff = std::min<int64_t>(p.S, p.L + p.causal_offset);
  a.S = static_cast<int>(std::max<int64_t>(s_eff, 0));
  const int64_t s_map = std::max<int64_t>(s_eff, 1);

  CUtensorMap tq, tk, tv;
  if (!make_map<T>(&tq, p.q, C::E, p.L, p.H, p.B, p.q_sl, p.q_sh, p.q_sb, C::kBlockM) ||
      !make_map<T>(&tk, p.k, C::E, s_map, p.Hkv, p.B, p.k_sl, p.k_sh, p.k_sb, C::kBlockN) ||
      !make_map<T>(&tv, p.v, C::E, s_map, p.Hkv, p.B, p.v_sl, p.v_sh, p.v_sb, C::kBlockN))
    return false;

  // FLASH_ATTN_EXT_V4_LOOP picks the consumer loop for side-by-side timing: simple, overlap,
  // simple_pp, overlap_pp (_pp: pingpong between the consumer warpgroups).
  const char* env = std::getenv("FLASH_ATTN_EXT_V4_LOOP");
  const std::string loop = env != nullptr ? env : "overlap_pp";
  auto kernel = v4_fwd_kernel<T, C, CAUSAL, true, true>;
  if (loop == "simple") kernel = v4_fwd_kernel<T, C, CAUSAL, false, false>;
  if (loop == "overlap") kernel = v4_fwd_kernel<T, C, CAUSAL, true, false>;
  if (loop == "simple_pp") kernel = v4_fwd_kernel<T, C, CAUSAL, false, true>;
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmemBytes);
  const int64_t blocks = static_cast<int64_t>(a.num_m) * p.B * p.H;
  kernel<<<static_cast<unsigned>(blocks), C::kThreads, C::kSmemBytes, stream>>>(tq, tk, tv, a);
  return true;
}

// Returns false (nothing launched) if a tensor map cannot be encoded; the caller falls back.
// FLASH_ATTN_EXT_V4_TILE=wide picks the wider tile: 128 x 176 for E = 128, 192 x 128 (three
// consumer warpgroups) for E = 64.
template <typename T, int E, bool CAUSAL>
bool run_v4(const FwdParams& p, cudaStream_t stream) {
  const char* env = std::getenv("FLASH_ATTN_EXT_V4_TILE");
  const bool wide = env != nullptr && std::string(env) == "wide";
  if (!wide) return run_cfg<T, Cfg<E, 128, 128>, CAUSAL>(p, stream);
  if constexpr (E == 128) return run_cfg<T, Cfg<E, 128, 176>, CAUSAL>(p, stream);
  return run_cfg<T, Cfg<E, 192, 128>, CAUSAL>(p, stream);
}

}  // namespace flash_attn_ext::cuda::v4
