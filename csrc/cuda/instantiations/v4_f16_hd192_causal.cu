// v4, f16, E = 192, causal: one explicit instantiation per file.
#include "../kernels/v4_wgmma/launch_template.cuh"

namespace flash_attn_ext::cuda::v4 {
template bool run_v4<__half, 192, true>(const FwdParams&, cudaStream_t);
}  // namespace flash_attn_ext::cuda::v4
