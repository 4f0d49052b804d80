// The op schemas (one TORCH_LIBRARY block) and the small pybind11 module that
// reports what this build contains. Backends register implementations in
// csrc/cpu/api.cpp and csrc/cuda/api.cu.
#include <torch/extension.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/registry.h"
#include "cpu/kernels.h"

namespace flash_attn_ext {

TORCH_LIBRARY(flash_attn_ext, m) {
  // q (B, H, L, E), k (B, Hkv, S, E), v (B, Hkv, S, Ev), mask broadcastable to (B, H, L, S).
  // causal: 0 none, 1 top-left, 2 bottom-right. kernel: "auto" or a name from kernels().
  // precision: how float32 inputs use tensor cores ("auto", "ieee", "3xtf32", "tf32"); ignored otherwise.
  // Returns out (B, H, L, Ev) in q's dtype and lse (B, H, L) float32.
  m.def("fwd(Tensor q, Tensor k, Tensor v, Tensor? mask, float? scale, int causal, str kernel, str precision) -> (Tensor, Tensor)");
  // The backward of fwd from its saved out and lse (dlse: gradient of lse, if it was used).
  // Returns dq, dk, dv in the inputs' layout-free contiguous form and, when mask_grad, dS as
  // (B, H, L, S) in the accumulator dtype (an empty tensor otherwise); ops.py reduces dS to the mask's shape.
  // precision: the forward's float32_precision (float32 on CUDA: "tf32" runs the TF32 backward, "ieee" the
  // dense CUDA-core one, the others 3xTF32); the CPU validates it and computes IEEE float32.
  m.def("bwd(Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, Tensor? dlse, Tensor? mask, float? scale, int causal, str kernel, bool mask_grad, str precision=\"auto\") -> (Tensor, Tensor, Tensor, Tensor)");
}

namespace {

pybind11::dict build_info() {
  pybind11::dict info;
#ifdef WITH_CUDA
  info["cuda"] = true;
  info["cuda_archs"] = FLASH_ATTN_EXT_CUDA_ARCHS;
#else
  info["cuda"] = false;
  info["cuda_archs"] = "";
#endif
  info["cpu_isa"] = cpu::flash_forward_isa();
  return info;
}

pybind11::list kernels() {
  pybind11::list out;
  for (const KernelInfo& k : kernel_list()) {
    pybind11::dict d;
    d["name"] = k.name;
    d["device"] = k.device;
    d["summary"] = k.summary;
    out.append(d);
  }
  return out;
}

// The kernel a call would run and why, without running it.
pybind11::dict explain(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                       const std::optional<at::Tensor>& mask, std::optional<double> scale, int64_t causal,
                       const std::string& kernel, const std::string& precision) {
  ForwardCall c = prepare_forward(q, k, v, mask, scale, causal, precision, /*allocate=*/false);
  KernelChoice choice, backward;
  if (q.device().is_cpu()) {
    choice = choose_cpu_kernel(c.params, kernel);
  } else {
#ifdef WITH_CUDA
    choice = choose_cuda_kernel(c.params, kernel, q.device().index());
    backward = choose_cuda_backward(c.params, kernel, q.device().index());
#else
    TORCH_CHECK_VALUE(false, "flash_attention: q is on ", q.device(), " but this build has no CUDA kernels");
#endif
  }
  pybind11::dict d;
  d["kernel"] = choice.name;
  d["device"] = q.device().str();
  d["reason"] = choice.reason;
  if (!backward.name.empty()) {
    d["backward"] = backward.name;
    d["backward_reason"] = backward.reason;
  }
  return d;
}

}  // namespace

}  // namespace flash_attn_ext

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "flash_attn_ext build information; the ops live under torch.ops.flash_attn_ext";
  m.def("build_info", &flash_attn_ext::build_info, "What this build contains (CUDA, archs, CPU ISA)");
  m.def("kernels", &flash_attn_ext::kernels, "Every kernel compiled in, with its device and a one-line summary");
  m.def("explain", &flash_attn_ext::explain, "The kernel a call would run and why");
}
