// Declarations of the explicit instantiations (csrc/cuda/instantiations/v3_*.cu) that the
// dispatcher in launch.cu calls; the template body lives in launch_template.cuh.
#pragma once

#include <cuda_runtime.h>

#include "args.h"
#include "tile_sizes.h"

namespace flash_attn_ext::cuda::v3 {

template <Mode M, int HD, bool CAUSAL, int ROWS>
void run_v3(const V3Args& a, cudaStream_t stream);

// Query rows per CTA for a (mode, bucket, rows per warp): the launcher needs it for the grid.
int block_m(Mode mode, int hd, int rows);

}  // namespace flash_attn_ext::cuda::v3
