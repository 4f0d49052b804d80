// The one templated launcher each instantiation file compiles for its (mode, head-dim
// bucket, causal, rows per warp) tuple. Included only by csrc/cuda/instantiations/v3_*.cu.
#pragma once

#include <cuda_runtime.h>

#include "kernel.cuh"
#include "kernel_rows32.cuh"
#include "run.h"

namespace flash_attn_ext::cuda::v3 {

template <Mode M, int HD, bool CAUSAL, int ROWS>
void run_v3(const V3Args& a, cudaStream_t stream) {
  using Cfg = KernelConfig<M, HD, ROWS>;
  auto* kernel = [] {
    if constexpr (ROWS == 32) return v3_fwd_kernel_rows32<M, HD, CAUSAL>;
    else return v3_fwd_kernel<M, HD, CAUSAL>;
  }();
  // A function attribute, not a stream operation: legal while a CUDA graph is being captured.
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(Cfg::kSmemBytes));
  const int64_t blocks = a.n_qblocks * a.p.B * a.p.H;
  kernel<<<static_cast<unsigned>(blocks), Cfg::kThreads, Cfg::kSmemBytes, stream>>>(a);
}

}  // namespace flash_attn_ext::cuda::v3
