// Declarations of the v4 explicit instantiations (defined in csrc/cuda/instantiations/v4_*.cu
// and v4m_*.cu), so launch.cu does not compile the kernel itself.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "../../../common/params.h"

namespace flash_attn_ext::cuda::v4 {

template <typename T, int E, bool CAUSAL>
bool run_v4(const FwdParams& p, cudaStream_t stream);

// float32, float32-accurate (3xTF32; launch_f32x3.cuh), E in {64, 128}.
template <int E, bool CAUSAL>
bool run_v4_f32x3(const FwdParams& p, cudaStream_t stream);

// float32, float32-accurate on fp16 tensor cores (3xF16; launch_f16x3.cuh), E in {64, 128}.
template <int E, bool CAUSAL>
bool run_v4_f16x3(const FwdParams& p, cudaStream_t stream);

// Dense bool mask (launch_masked.cuh): workspace of v4_wgmma_workspace_bytes(p) bytes, 256-byte
// aligned, on the device, usable in stream order.
template <typename T, int E>
bool run_v4_masked(const FwdParams& p, void* workspace, cudaStream_t stream);

}  // namespace flash_attn_ext::cuda::v4
