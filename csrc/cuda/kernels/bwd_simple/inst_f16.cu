// bwd_simple for __half inputs (every head-dim bucket): one explicit instantiation per file.
#include "launch_template.cuh"

namespace flash_attn_ext::cuda::bwd_simple {
template void run<__half>(const BwdParams&, cudaStream_t);
}  // namespace flash_attn_ext::cuda::bwd_simple
