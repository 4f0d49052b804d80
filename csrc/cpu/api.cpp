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
#include "backward_kernels.h"
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

// Runs fn(item, scratch) for every item in [0, n) on the intra-op thread pool, each thread with its
// own 64-byte-aligned scratch of `bytes` bytes. Threads take items one at a time from a shared
// counter rather than a fixed share each: causal items differ in cost, and a thread the OS pauses
// must not hold the others back.
template <typename Fn>
void parallel_items_with_scratch(int64_t n, size_t bytes, const Fn& fn) {
  std::atomic<int64_t> next_item{0};
  at::parallel_for(0, std::min<int64_t>(n, at::get_num_threads()), 1, [&](int64_t, int64_t) {
    std::unique_ptr<char[]> scratch(new char[bytes + 64]);
    void* aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(scratch.get()) + 63) & ~uintptr_t(63));
    for (int64_t w = next_item.fetch_add(1); w < n; w = next_item.fetch_add(1)) fn(w, aligned);
  });
}

std::tuple<at::Tensor, at::Tensor> fwd_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                           const std::optional<at::Tensor>& mask, std::optional<double> scale,
                                           int64_t causal, c10::string_view kernel,
                                           c10::string_view precision) {
  // The CPU always computes float32 in IEEE arithmetic; precision is still validated.
  ForwardCall c = prepare_forward(q, k, v, mask, scale, causal, std::string(precision));
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
    parallel_items_with_scratch(cpu::flash_forward_num_work(p), cpu::flash_forward_scratch_bytes(p),
                                [&](int64_t w, void* s) { cpu::flash_forward(p, w, w + 1, s); });
  }
  return {c.out, c.lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> bwd_cpu(
    const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& out,
    const at::Tensor& lse, const std::optional<at::Tensor>& dlse, const std::optional<at::Tensor>& mask,
    std::optional<double> scale, int64_t causal, c10::string_view kernel, bool mask_grad,
    c10::string_view precision) {
  // The CPU always computes float32 in IEEE arithmetic; precision is still validated.
  BackwardCall c = prepare_backward(dout, q, k, v, out, lse, dlse, mask, scale, causal, mask_grad, std::string(precision));
  choose_cpu_kernel(c.fwd.params, std::string(kernel));  // validates the name; both kernels share this backward
  at::Tensor dscores = c.dscores.defined() ? c.dscores : at::empty({0}, q.options().dtype(at::kFloat));
  if (c.empty) return {c.dq, c.dk, c.dv, dscores};
  const BwdParams& bp = c.params;
  if (bp.fwd.dtype == ScalarKind::kFloat64) {
    // float64 (gradcheck) keeps the scalar two-pass loop.
    const size_t bytes = cpu::backward_scratch_bytes(bp);
    parallel_items_with_scratch(cpu::backward_kv_num_work(bp), bytes,
                                [&](int64_t w, void* s) { cpu::backward_kv(bp, w, w + 1, s); });
    parallel_items_with_scratch(cpu::backward_q_num_work(bp), bytes,
                                [&](int64_t w, void* s) { cpu::backward_q(bp, w, w + 1, s); });
    return {c.dq, c.dk, c.dv, dscores};
  }
  at::Tensor dq_part = at::empty({cpu::backward_vec_dq_part_floats(bp)}, q.options().dtype(at::kFloat));
  float* part = dq_part.data_ptr<float>();
  parallel_items_with_scratch(cpu::backward_vec_num_work(bp), cpu::backward_vec_scratch_bytes(bp),
                              [&](int64_t w, void* s) { cpu::backward_vec(bp, w, s, part); });
  at::parallel_for(0, bp.fwd.B * bp.fwd.H * bp.fwd.L, 64,
                   [&](int64_t begin, int64_t end) { cpu::backward_vec_finish_dq(bp, part, begin, end); });
  return {c.dq, c.dk, c.dv, dscores};
}

}  // namespace

TORCH_LIBRARY_IMPL(flash_attn_ext, CPU, m) {
  m.impl("fwd", &fwd_cpu);
  m.impl("bwd", &bwd_cpu);
}

}  // namespace flash_attn_ext
