// v4, float32-accurate on fp16 tensor cores (3xF16), E = 128, causal: one explicit instantiation per file.
#include "../kernels/v4_wgmma/launch_f16x3.cuh"

namespace flash_attn_ext::cuda::v4 {
template bool run_v4_f16x3<128, true>(const FwdParams&, cudaStream_t);
}  // namespace flash_attn_ext::cuda::v4
