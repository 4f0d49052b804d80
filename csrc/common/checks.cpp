#include "checks.h"

#include <cmath>
#include <limits>
#include <sstream>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

namespace flash_attn_ext {
namespace {

std::string shape_str(const at::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

ScalarKind to_kind(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return ScalarKind::kFloat32;
    case at::kHalf: return ScalarKind::kFloat16;
    case at::kBFloat16: return ScalarKind::kBFloat16;
    case at::kDouble: return ScalarKind::kFloat64;
    case at::kBool: return ScalarKind::kBool;
    default: TORCH_CHECK(false, "flash_attn_ext: unsupported dtype ", t);
  }
}

// Kernels read the last dim with unit stride; anything else is copied once here.
at::Tensor unit_stride_last(const at::Tensor& t) {
  if (t.size(-1) <= 1 || t.stride(-1) == 1) return t;
  return t.contiguous();
}

void check_qkv(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  const char* names[3] = {"q", "k", "v"};
  const at::Tensor* ts[3] = {&q, &k, &v};
  for (int i = 0; i < 3; ++i) {
    TORCH_CHECK_VALUE(ts[i]->dim() == 4, "flash_attention: ", names[i],
                      " must be 4-D (B, H, L, E) at the op level, got shape ", shape_str(*ts[i]));
  }
  const auto dt = q.scalar_type();
  const bool cpu = q.device().is_cpu();
  TORCH_CHECK_VALUE(dt == at::kFloat || dt == at::kHalf || dt == at::kBFloat16 || (cpu && dt == at::kDouble),
                    "flash_attention: q has dtype ", dt, "; expected float32, float16 or bfloat16",
                    cpu ? " (or float64 on the CPU)" : "");
  TORCH_CHECK_VALUE(k.scalar_type() == dt && v.scalar_type() == dt, "flash_attention: q, k, v must share one dtype, got q ",
                    dt, ", k ", k.scalar_type(), ", v ", v.scalar_type());
  TORCH_CHECK_VALUE(k.device() == q.device() && v.device() == q.device(),
                    "flash_attention: q, k, v must be on one device, got q on ", q.device(), ", k on ", k.device(),
                    ", v on ", v.device());
  TORCH_CHECK_VALUE(k.size(0) == q.size(0) && v.size(0) == q.size(0),
                    "flash_attention: batch sizes differ: q ", shape_str(q), ", k ", shape_str(k), ", v ", shape_str(v));
  TORCH_CHECK_VALUE(k.size(1) == v.size(1), "flash_attention: k and v must have the same number of heads, got k ",
                    shape_str(k), " and v ", shape_str(v));
  TORCH_CHECK_VALUE(k.size(2) == v.size(2), "flash_attention: k and v must have the same sequence length S, got k ",
                    shape_str(k), " and v ", shape_str(v));
  TORCH_CHECK_VALUE(k.size(3) == q.size(3), "flash_attention: q and k must share the head dim E, got q ",
                    shape_str(q), " and k ", shape_str(k));
  const int64_t H = q.size(1), Hkv = k.size(1);
  TORCH_CHECK_VALUE(Hkv >= 1 || H == 0, "flash_attention: k has 0 heads, shape ", shape_str(k));
  TORCH_CHECK_VALUE(Hkv == 0 || H % Hkv == 0, "flash_attention: q's heads (", H,
                    ") must be a multiple of k/v's heads (", Hkv, ") for GQA/MQA");
  TORCH_CHECK_VALUE(q.size(3) >= 1 && q.size(3) <= 256, "flash_attention: head dim E of q/k must be in 1..256, got ",
                    q.size(3));
  TORCH_CHECK_VALUE(v.size(3) >= 1 && v.size(3) <= 256, "flash_attention: head dim Ev of v must be in 1..256, got ",
                    v.size(3));
}

// Broadcasts the mask to (B, H, L, S) as a view, after checking it can be.
at::Tensor check_mask(const at::Tensor& mask, const at::Tensor& q, int64_t B, int64_t H, int64_t L, int64_t S) {
  const auto dt = mask.scalar_type();
  TORCH_CHECK_VALUE(dt == at::kBool || at::isFloatingType(dt),
                    "flash_attention: mask has dtype ", dt, "; expected bool (True = attend) or a floating dtype (added to the scores)");
  TORCH_CHECK_VALUE(dt == at::kBool || dt == at::kFloat || dt == at::kHalf || dt == at::kBFloat16 || dt == at::kDouble,
                    "flash_attention: mask dtype ", dt, " is not supported; use bool, float32, float16, bfloat16 or float64");
  TORCH_CHECK_VALUE(mask.device() == q.device(), "flash_attention: mask is on ", mask.device(), " but q is on ",
                    q.device());
  TORCH_CHECK_VALUE(mask.dim() <= 4, "flash_attention: mask must have at most 4 dims broadcastable to (B, H, L, S) = (",
                    B, ", ", H, ", ", L, ", ", S, "), got shape ", shape_str(mask));
  const int64_t target[4] = {B, H, L, S};
  const int64_t off = 4 - mask.dim();
  for (int64_t d = 0; d < mask.dim(); ++d) {
    const int64_t got = mask.size(d);
    TORCH_CHECK_VALUE(got == 1 || got == target[off + d], "flash_attention: mask of shape ", shape_str(mask),
                      " does not broadcast to (B, H, L, S) = (", B, ", ", H, ", ", L, ", ", S, ")");
  }
  return mask.expand({B, H, L, S});
}

// Points the params at the validated inputs: explain() needs their strides and alignment too.
void bind_inputs(ForwardCall& c) {
  FwdParams& p = c.params;
  p.q = c.q.data_ptr(); p.k = c.k.data_ptr(); p.v = c.v.data_ptr();
  p.q_sb = c.q.stride(0); p.q_sh = c.q.stride(1); p.q_sl = c.q.stride(2);
  p.k_sb = c.k.stride(0); p.k_sh = c.k.stride(1); p.k_sl = c.k.stride(2);
  p.v_sb = c.v.stride(0); p.v_sh = c.v.stride(1); p.v_sl = c.v.stride(2);
  if (c.mask.defined()) {
    p.mask = c.mask.data_ptr();
    p.m_sb = c.mask.stride(0); p.m_sh = c.mask.stride(1); p.m_sl = c.mask.stride(2); p.m_ss = c.mask.stride(3);
  }
}

void bind_outputs(ForwardCall& c) {
  FwdParams& p = c.params;
  p.out = c.out.data_ptr(); p.lse = c.lse.data_ptr<float>();
  p.o_sb = c.out.stride(0); p.o_sh = c.out.stride(1); p.o_sl = c.out.stride(2);
}

}  // namespace

ForwardCall prepare_forward(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
                            const std::optional<at::Tensor>& mask_in, std::optional<double> scale, int64_t causal,
                            const std::string& precision, bool allocate) {
  check_qkv(q_in, k_in, v_in);
  TORCH_CHECK_VALUE(causal == kCausalNone || causal == kCausalTopLeft || causal == kCausalBottomRight,
                    "flash_attention: causal code must be 0 (none), 1 (top_left) or 2 (bottom_right), got ", causal);
  Float32Precision prec = Float32Precision::kAuto;
  if (precision == "ieee") prec = Float32Precision::kIeee;
  else if (precision == "3xtf32") prec = Float32Precision::k3xTf32;
  else if (precision == "tf32") prec = Float32Precision::kTf32;
  else TORCH_CHECK_VALUE(precision == "auto", "flash_attention: float32_precision must be 'auto', 'ieee', '3xtf32' or 'tf32', got '",
                         precision, "'");
  ForwardCall c;
  c.params.precision = prec;
  c.q = unit_stride_last(q_in);
  c.k = unit_stride_last(k_in);
  c.v = unit_stride_last(v_in);
  const int64_t B = c.q.size(0), H = c.q.size(1), L = c.q.size(2), E = c.q.size(3);
  const int64_t Hkv = c.k.size(1), S = c.k.size(2), Ev = c.v.size(3);
  if (mask_in.has_value() && mask_in->defined()) c.mask = check_mask(*mask_in, c.q, B, H, L, S);

  const double sc = scale.has_value() ? *scale : 1.0 / std::sqrt(static_cast<double>(E));
  TORCH_CHECK_VALUE(std::isfinite(sc), "flash_attention: scale must be finite, got ", sc);

  FwdParams& p = c.params;
  p.B = B; p.H = H; p.Hkv = Hkv; p.L = L; p.S = S; p.E = E; p.Ev = Ev;
  p.group = Hkv > 0 ? H / Hkv : 1;
  p.dtype = to_kind(c.q.scalar_type());
  p.scale_f64 = sc;
  p.scale = static_cast<float>(sc);
  p.scale_log2 = static_cast<float>(sc * 1.4426950408889634);
  p.causal = static_cast<CausalMode>(causal);
  p.causal_offset = causal == kCausalBottomRight ? S - L : 0;
  if (c.mask.defined()) {
    p.mask_kind = c.mask.scalar_type() == at::kBool ? MaskKind::kBool : MaskKind::kFloat;
    p.mask_dtype = to_kind(c.mask.scalar_type());
  }

  bind_inputs(c);
  if (!allocate) return c;  // explain() and the backward: no outputs of ours
  c.out = at::empty({B, H, L, Ev}, c.q.options());
  c.lse = at::empty({B, H, L}, c.q.options().dtype(at::kFloat));
  if (p.nothing_to_compute()) {
    // No key to attend to (or nothing to compute): fully masked rows by definition.
    c.out.zero_();
    c.lse.fill_(-std::numeric_limits<float>::infinity());
    c.empty = true;
    return c;
  }

  bind_outputs(c);
  return c;
}

BackwardCall prepare_backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& out, const at::Tensor& lse, const std::optional<at::Tensor>& dlse,
                              const std::optional<at::Tensor>& mask, std::optional<double> scale, int64_t causal,
                              bool mask_grad, const std::string& precision, bool delta_by_backend) {
  BackwardCall c;
  c.fwd = prepare_forward(q, k, v, mask, scale, causal, precision, /*allocate=*/false);
  FwdParams& p = c.fwd.params;
  const std::vector<int64_t> out_shape = {p.B, p.H, p.L, p.Ev};
  TORCH_CHECK_VALUE(out.sizes() == c10::IntArrayRef(out_shape) && out.scalar_type() == q.scalar_type(),
                    "flash_attention backward: out must be ", c10::IntArrayRef(out_shape), " ", q.scalar_type(),
                    ", got ", shape_str(out), " ", out.scalar_type());
  TORCH_CHECK_VALUE(dout.sizes() == out.sizes() && dout.device() == q.device(),
                    "flash_attention backward: grad of out must match out ", shape_str(out), " on ", q.device(),
                    ", got ", shape_str(dout), " on ", dout.device());
  TORCH_CHECK_VALUE(lse.sizes() == c10::IntArrayRef({p.B, p.H, p.L}) && lse.scalar_type() == at::kFloat,
                    "flash_attention backward: lse must be float32 (B, H, L), got ", shape_str(lse), " ",
                    lse.scalar_type());
  c.fwd.out = out.contiguous();
  c.fwd.lse = lse.contiguous();
  c.dout = unit_stride_last(dout.scalar_type() == q.scalar_type() ? dout : dout.to(q.scalar_type()));

  const auto acc = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const bool has_dlse = dlse.has_value() && dlse->defined();
  if (has_dlse)
    TORCH_CHECK_VALUE(dlse->sizes() == lse.sizes() && dlse->device() == q.device(),
                      "flash_attention backward: grad of lse must match lse ", shape_str(lse), " on ", q.device(),
                      ", got ", shape_str(*dlse), " on ", dlse->device());
  if (delta_by_backend) {
    c.delta = at::empty({p.B, p.H, p.L}, q.options().dtype(at::kFloat));
    if (has_dlse) c.dlse = dlse->to(at::kFloat).contiguous();
  } else {
    c.delta = (c.dout.to(acc) * c.fwd.out.to(acc)).sum(-1);
    if (has_dlse) c.delta.sub_(dlse->to(acc));
    c.delta = c.delta.contiguous();
  }
  // Every backend writes every element of dq, dk and dv; only an empty call leaves them to us.
  c.empty = p.nothing_to_compute();
  c.dq = at::empty({p.B, p.H, p.L, p.E}, q.options());
  c.dk = at::empty({p.B, p.Hkv, p.S, p.E}, q.options());
  c.dv = at::empty({p.B, p.Hkv, p.S, p.Ev}, q.options());
  if (c.empty) {
    c.dq.zero_();
    c.dk.zero_();
    c.dv.zero_();
  }
  if (mask_grad) {
    TORCH_CHECK_VALUE(c.fwd.mask.defined() && c.fwd.mask.scalar_type() != at::kBool,
                      "flash_attention backward: a mask gradient needs a floating mask");
    c.dscores = at::zeros({p.B, p.H, p.L, p.S}, q.options().dtype(acc));
  }
  bind_outputs(c.fwd);

  BwdParams& bp = c.params;
  bp.fwd = p;
  bp.dout = c.dout.data_ptr();
  bp.do_sb = c.dout.stride(0); bp.do_sh = c.dout.stride(1); bp.do_sl = c.dout.stride(2);
  bp.delta = c.delta.data_ptr();
  bp.dq = c.dq.data_ptr(); bp.dk = c.dk.data_ptr(); bp.dv = c.dv.data_ptr();
  bp.dscores = c.dscores.defined() ? c.dscores.data_ptr() : nullptr;
  return c;
}

}  // namespace flash_attn_ext
