// CPU host side: checks -> params -> kernel choice -> threaded launch.
#include <algorithm>
#include <atomic>
#include <memory>
#include <tuple>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../common/checks.h"
#include "../common/registry.h"
#include "kernels.h"

namespace flash_attn_ext {

KernelChoice choose_cpu_kernel(const FwdParams& p, const std::string& requested) {
  if (requested == "auto" || requested == "flash") {
    return {"flash", requested == "auto" ? std::string("the CPU has one flash kernel (") + cpu::flash_forward_isa() +
                                               " vector path); it never materialises the score matrix"
                                         : "requested by name"};
  }
  if (requested == "naive") return {"naive", "requested by name: materialises the (L, S) scores per head"};
  TORCH_CHECK_VALUE(false, "flash_attention: kernel='", requested,
                    "' is not a CPU kernel; expected 'auto', 'flash' or 'naive'");
}

namespace {

std::tuple<at::Tensor, at::Tensor> fwd_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                           const std::optional<at::Tensor>& mask, std::optional<double> scale,
                                           int64_t causal, c10::string_view kernel) {
  ForwardCall c = prepare_forward(q, k, v, mask, scale, causal);
  const KernelChoice choice = choose_cpu_kernel(c.params, std::string(kernel));
  if (c.empty) return {c.out, c.lse};
  const FwdParams& p = c.params;

  if (choice.name == "naive") {
    // One (L, S) score matrix per head in flight: this is the memory the flash kernel avoids.
    const auto acc = p.dtype == ScalarKind::kFloat64 ? at::kDouble : at::kFloat;
    at::parallel_for(0, p.B * p.H, 1, [&](int64_t begin, int64_t end) {
      at::Tensor scores = at::empty({(end - begin) * p.L * p.S}, at::TensorOptions().dtype(acc));
      cpu::naive_forward(p, begin, end, scores.data_ptr());
    });
  } else {
    // Threads take work items one at a time from a shared counter rather than a fixed share each:
    // causal items differ in cost, and a thread the OS pauses must not hold the others back.
    const size_t scratch_bytes = cpu::flash_forward_scratch_bytes(p);
    const int64_t num_work = cpu::flash_forward_num_work(p);
    std::atomic<int64_t> next_item{0};
    at::parallel_for(0, std::min<int64_t>(num_work, at::get_num_threads()), 1, [&](int64_t, int64_t) {
      std::unique_ptr<char[]> scratch(new char[scratch_bytes + 64]);
      void* aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(scratch.get()) + 63) & ~uintptr_t(63));
      for (int64_t w = next_item.fetch_add(1); w < num_work; w = next_item.fetch_add(1))
        cpu::flash_forward(p, w, w + 1, aligned);
    });
  }
  return {c.out, c.lse};
}

}  // namespace

TORCH_LIBRARY_IMPL(flash_attn_ext, CPU, m) {
  m.impl("fwd", &fwd_cpu);
}

}  // namespace flash_attn_ext
