// Which kernels exist and which one runs: the one place kernel names live.
#pragma once

#include <string>
#include <vector>

#include "params.h"

namespace flash_attn_ext {

struct KernelInfo {
  std::string name;     // what kernel= takes
  std::string device;   // "cpu" or "cuda"
  std::string summary;  // one line for docs and explain()
};

struct KernelChoice {
  std::string name;
  std::string reason;
};

// Every kernel compiled into this build.
std::vector<KernelInfo> kernel_list();

// Resolves kernel= ("auto" or a name) for a CPU call; throws a ValueError for
// names that do not exist on the CPU or cannot take these inputs.
KernelChoice choose_cpu_kernel(const FwdParams& p, const std::string& requested);

}  // namespace flash_attn_ext

#ifdef WITH_CUDA
namespace flash_attn_ext {
// The CUDA ladder's kernels (csrc/cuda/api.cu) and the choice among them.
std::vector<KernelInfo> cuda_kernel_list();
KernelChoice choose_cuda_kernel(const FwdParams& p, const std::string& requested, int device_index);
// Which backward runs for these inputs: "bwd_wgmma" (Hopper tensor cores), "bwd_mma" (mma.sync tensor
// cores), "bwd_simple" (CUDA cores), all O(L + S) memory, or "dense" (ATen float32 matrices, O(L * S)
// memory), and why.
KernelChoice choose_cuda_backward(const FwdParams& p, const std::string& requested, int device_index);
}  // namespace flash_attn_ext
#endif
