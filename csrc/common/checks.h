// Host-side input validation and FwdParams construction, shared by every backend.
#pragma once

#include <optional>
#include <string>

#include <ATen/core/Tensor.h>

#include "params.h"

namespace flash_attn_ext {

// Everything a backend needs to run one forward: validated views of the
// inputs (kept alive here), the allocated outputs, and the params pointing at them.
struct ForwardCall {
  at::Tensor q, k, v, mask;  // mask is undefined or a (B, H, L, S) stride-0 broadcast view
  at::Tensor out;            // (B, H, L, Ev), q's dtype, contiguous
  at::Tensor lse;            // (B, H, L) float32, contiguous
  FwdParams params;
  bool empty = false;        // B*H*L == 0 or S == 0: outputs already filled, run nothing
};

// Causal codes as they cross the op boundary (the Python layer maps
// False/True/"top_left"/"bottom_right" to these).
constexpr int64_t kCausalNone = 0;
constexpr int64_t kCausalTopLeft = 1;
constexpr int64_t kCausalBottomRight = 2;

// Validates q (B,H,L,E), k (B,Hkv,S,E), v (B,Hkv,S,Ev), the mask and the
// causal code; errors name the argument, what was seen and what was expected.
// Tensors whose last dim is not unit-stride are copied once (documented).
ForwardCall prepare_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const std::optional<at::Tensor>& mask, std::optional<double> scale,
                            int64_t causal, const std::string& precision = "auto", bool allocate = true);

// Everything a backend needs to run one backward.
struct BackwardCall {
  ForwardCall fwd;  // validated q, k, v, mask views; fwd.out / fwd.lse are the saved forward results
  at::Tensor dout, delta;
  at::Tensor dlse;        // (B, H, L) float32 contiguous when the LSE has a gradient and delta is left to the backend
  at::Tensor dq, dk, dv;  // contiguous, inputs' dtype; zeros only when empty
  at::Tensor dscores;     // (B, H, L, S) accumulator dtype when the mask needs a gradient, else undefined
  BwdParams params;
  bool empty = false;     // nothing to compute: the zero gradients are the answer
};

// Validates the saved forward results and the incoming gradients against q, k, v,
// computes D = rowsum(dO * O) - dlse, and allocates the gradients. With delta_by_backend, D is
// only allocated (float32 (B, H, L)) and dlse kept: the backend fills D in a pre-pass of its own
// (CUDA: one read of dO and O, where the ATen expression makes four passes over float32 copies).
BackwardCall prepare_backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& out, const at::Tensor& lse, const std::optional<at::Tensor>& dlse,
                              const std::optional<at::Tensor>& mask, std::optional<double> scale, int64_t causal,
                              bool mask_grad, const std::string& precision = "auto", bool delta_by_backend = false);

}  // namespace flash_attn_ext
