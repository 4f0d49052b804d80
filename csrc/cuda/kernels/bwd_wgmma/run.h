// Declarations of the bwd_wgmma explicit instantiations (csrc/cuda/instantiations/bwdwg_*.cu), so
// launch.cu does not compile the kernel itself.
#pragma once

#include <cuda_runtime.h>

#include "../../../common/params.h"

namespace flash_attn_ext::cuda::bwdwg {

// Returns false, having launched nothing, if the driver refuses a tensor map.
template <bool BF16, int E, bool CAUSAL>
bool run_bwdwg(const BwdParams& p, float* dq_accum, cudaStream_t stream);

}  // namespace flash_attn_ext::cuda::bwdwg
