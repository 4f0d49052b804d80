// The templated launcher of the float32 backward, one per (TF32 or 3xTF32, head-dim bucket,
// causal). Included only by csrc/cuda/instantiations/bwd_tf32*_*.cu.
#pragma once

#include <cuda_runtime.h>

#include "dkdv_f32_kernel.cuh"
#include "dq_f32_kernel.cuh"
#include "run.h"

namespace flash_attn_ext::cuda::bwd {

// As run_bwd (launch_template.cuh), float32 q, k, v, dout, dq, dk, dv.
template <bool X3, int HD, bool CAUSAL>
void run_bwd_f32(const BwdArgs& a, cudaStream_t stream) {
  using T = TileSizesF32<HD>;
  using TQ = DqTileSizesF32<HD>;
  const FwdParams& p = a.p.fwd;
  auto* dkdv = bwd_dkdv_f32_kernel<X3, HD, CAUSAL>;
  cudaFuncSetAttribute(dkdv, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(DkDvSmemF32<HD>::kBytes));
  // HD <= 64 (88 KiB or less) fits two CTAs per SM on sm_90 when the carveout is the largest (see v5x2).
  cudaFuncSetAttribute(dkdv, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared);
  const int64_t dkdv_blocks = a.n_kblocks * p.B * p.Hkv;
  dkdv<<<static_cast<unsigned>(dkdv_blocks), T::kThreads, DkDvSmemF32<HD>::kBytes, stream>>>(a);
  if (a.dq_accum != nullptr) return;
  auto* dq = bwd_dq_f32_kernel<X3, HD, CAUSAL>;
  cudaFuncSetAttribute(dq, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(DqSmemF32<HD>::kBytes));
  const int64_t dq_blocks = a.n_qblocks * p.B * p.H;
  dq<<<static_cast<unsigned>(dq_blocks), TQ::kThreads, DqSmemF32<HD>::kBytes, stream>>>(a);
}

}  // namespace flash_attn_ext::cuda::bwd
