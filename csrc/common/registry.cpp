#include "registry.h"

namespace flash_attn_ext {

std::vector<KernelInfo> kernel_list() {
  std::vector<KernelInfo> kernels = {
      {"naive", "cpu", "reference: materialises the (L, S) score matrix of each head, then softmax and P.V"},
      {"flash", "cpu", "tiled flash forward: 64-row query blocks, 128-key tiles, online softmax, threaded + SIMD"},
  };
#ifdef WITH_CUDA
  for (const KernelInfo& k : cuda_kernel_list()) kernels.push_back(k);
#endif
  return kernels;
}

}  // namespace flash_attn_ext
