// v4 with a dense bool mask, bf16, E = 64 (causal or not at run time): one explicit instantiation per file.
#include "../kernels/v4_wgmma/launch_masked.cuh"

namespace flash_attn_ext::cuda::v4 {
template bool run_v4_masked<__nv_bfloat16, 64>(const FwdParams&, void*, cudaStream_t);
}  // namespace flash_attn_ext::cuda::v4
