// v4, bf16, E = 192, not causal: one explicit instantiation per file.
#include "../kernels/v4_wgmma/launch_template.cuh"

namespace flash_attn_ext::cuda::v4 {
template bool run_v4<__nv_bfloat16, 192, false>(const FwdParams&, cudaStream_t);
}  // namespace flash_attn_ext::cuda::v4
