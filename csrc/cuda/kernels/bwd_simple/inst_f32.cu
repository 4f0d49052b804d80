// bwd_simple for float inputs (every head-dim bucket): one explicit instantiation per file.
#include "launch_template.cuh"

namespace flash_attn_ext::cuda::bwd_simple {
template void run<float>(const BwdParams&, cudaStream_t);
}  // namespace flash_attn_ext::cuda::bwd_simple
