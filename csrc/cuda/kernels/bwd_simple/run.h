// Declaration of bwd_simple's per-dtype launcher (body in launch_template.cuh, one explicit
// instantiation per dtype in inst_*.cu, the dispatcher in launch.cu).
#pragma once

#include <cuda_runtime.h>

#include "../../../common/params.h"

namespace flash_attn_ext::cuda::bwd_simple {

// T: float, __half or __nv_bfloat16 (the inputs' dtype).
template <typename T>
void run(const BwdParams& bp, cudaStream_t stream);

}  // namespace flash_attn_ext::cuda::bwd_simple
