// Declarations of the backward's explicit instantiations (csrc/cuda/instantiations/bwd_*.cu);
// the template body lives in launch_template.cuh, the dispatcher in launch.cu.
#pragma once

#include <cuda_runtime.h>

#include "args.h"

namespace flash_attn_ext::cuda::bwd {

// Launches the dK/dV kernel (and, when a.dq_accum is nullptr, the deterministic dQ kernel).
template <bool BF16, int HD, bool CAUSAL>
void run_bwd(const BwdArgs& a, cudaStream_t stream);

// The float32 backward (launch_template_f32.cuh): X3 = 3xTF32, else TF32.
template <bool X3, int HD, bool CAUSAL>
void run_bwd_f32(const BwdArgs& a, cudaStream_t stream);

}  // namespace flash_attn_ext::cuda::bwd
