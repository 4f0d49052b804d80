// CUDA host side: checks -> params -> kernel choice -> launch on the current stream
// of the tensors' own device.
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <tuple>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../common/checks.h"
#include "../common/registry.h"
#include "launch.h"

namespace flash_attn_ext {
namespace {

using Launcher = void (*)(const FwdParams&, cudaStream_t);

struct CudaKernel {
  const char* name;
  Launcher launch;  // nullptr: computed on the host side with ATen (the naive reference)
  int min_sm;       // lowest compute capability (major*10+minor) it runs on
  const char* summary;
};

// v4 encodes its TMA maps before it launches. If the driver refuses one (an old driver, a
// layout v4_wgmma_supports let through), nothing ran and the tensor-core rung takes the call.
// A bool mask gets its packed bits and tile lists in a workspace from the caching allocator on
// the current stream (stream-ordered: no host sync, fine under CUDA-graph capture).
void launch_v4_or_v3(const FwdParams& p, cudaStream_t stream) {
  at::Tensor workspace;
  const int64_t ws_bytes = cuda::v4_wgmma_workspace_bytes(p);
  if (ws_bytes > 0)
    workspace = at::empty({ws_bytes}, at::TensorOptions().dtype(at::kByte).device(at::kCUDA, c10::cuda::current_device()));
  if (cuda::launch_v4_wgmma(p, stream, ws_bytes > 0 ? workspace.data_ptr() : nullptr)) return;
  TORCH_WARN_ONCE("flash_attention: the driver refused a TMA tensor map for v4_wgmma; running v3_mma instead");
  cuda::launch_v3_mma(p, stream);
}

// The ladder, slowest first. Each rung takes every input of the API.
const CudaKernel kCudaKernels[] = {
    {"naive", nullptr, 0, "reference: ATen matmul + softmax, materialises the (L, S) scores in float32"},
    {"v0_naive", cuda::launch_v0_naive, 0, "one thread per query row, K/V straight from global memory"},
    {"v1_tiled", cuda::launch_v1_tiled, 0, "one thread per query row, K/V tiles staged in shared memory"},
    {"v2_warp", cuda::launch_v2_warp, 0, "warp-cooperative: lanes split the keys, shuffle reductions"},
    {"v3_mma", cuda::launch_v3_mma, 80, "tensor cores: mma.sync m16n8k16, ldmatrix, cp.async pipeline"},
    {"v4_wgmma", launch_v4_or_v3, 90, "Hopper: TMA + mbarrier ring, warp-specialised, wgmma SS (QK^T) and RS (PV)"},
};

int device_sm(int device_index) {
  int major = 0, minor = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device_index));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device_index));
  return major * 10 + minor;
}

const CudaKernel* find_kernel(const std::string& name) {
  for (const CudaKernel& k : kCudaKernels)
    if (name == k.name) return &k;
  return nullptr;
}

// The whole (B, H, L, S) score matrix in float32 and which pairs are visible:
// the naive reference's first step, shared by its forward and backward.
struct DenseScores {
  at::Tensor q, k, v;  // float32, K/V repeated over the GQA group
  at::Tensor scores;   // scale * q.k + bias, -inf where hidden
  at::Tensor keep;     // bool, visible pairs
};

DenseScores dense_scores(const ForwardCall& c) {
  const FwdParams& p = c.params;
  DenseScores d;
  at::Tensor q = c.q.to(at::kFloat), k = c.k.to(at::kFloat), v = c.v.to(at::kFloat);
  if (p.group > 1) {
    k = k.repeat_interleave(p.group, 1);
    v = v.repeat_interleave(p.group, 1);
  }
  at::Tensor scores = at::matmul(q, k.transpose(-1, -2)).mul_(p.scale_f64);
  at::Tensor keep = at::ones({p.B, p.H, p.L, p.S}, q.options().dtype(at::kBool));
  if (c.mask.defined()) {
    if (c.mask.scalar_type() == at::kBool) {
      keep = keep.logical_and(c.mask);
    } else {
      at::Tensor bias = c.mask.to(at::kFloat);
      keep = keep.logical_and(bias.ne(-std::numeric_limits<float>::infinity()));
      scores = scores + at::where(keep, bias, at::zeros({}, bias.options()));
    }
  }
  if (p.causal != CausalMode::kNone) {
    at::Tensor i = at::arange(p.L, q.options().dtype(at::kLong)).unsqueeze(1);
    at::Tensor j = at::arange(p.S, q.options().dtype(at::kLong)).unsqueeze(0);
    keep = keep.logical_and(j.le(i + p.causal_offset));
  }
  scores.masked_fill_(keep.logical_not(), -std::numeric_limits<float>::infinity());
  d.q = q; d.k = k; d.v = v; d.scores = scores; d.keep = keep;
  return d;
}

// P V when some V entries are NaN/Inf: a zero probability must not meet them (0 * Inf is NaN), yet a
// row that gives such an entry weight must get the IEEE sum. The finite part of V goes through the
// matmul; an output element that a non-finite entry reaches with p > 0 takes that sum's value: NaN if
// a NaN or both infinities reach it, else the infinity.
at::Tensor weighted_values_ieee(const at::Tensor& probs, const at::Tensor& v, const at::Tensor& bad) {
  const at::Tensor weight = probs.ne(0).to(at::kFloat);
  const auto reached = [&](const at::Tensor& which) { return at::matmul(weight, which.to(at::kFloat)).gt(0); };
  const double inf = std::numeric_limits<double>::infinity();
  const at::Tensor nan = reached(at::isnan(v)), pos = reached(v.eq(inf)), neg = reached(v.eq(-inf));
  at::Tensor clean = at::matmul(probs, at::where(bad, at::zeros({}, v.options()), v));
  clean = at::where(pos, at::full({}, inf, clean.options()), clean);
  clean = at::where(neg, at::full({}, -inf, clean.options()), clean);
  return at::where(nan.logical_or(pos.logical_and(neg)), at::full({}, std::nan(""), clean.options()), clean);
}

// The naive reference on the GPU: the whole (B, H, L, S) score matrix in float32.
void naive_cuda(const ForwardCall& c) {
  DenseScores d = dense_scores(c);
  at::Tensor lse = at::logsumexp(d.scores, -1);
  at::Tensor finite = at::isfinite(lse);
  at::Tensor probs = at::exp(d.scores - at::where(finite, lse, at::zeros({}, lse.options())).unsqueeze(-1));
  probs.masked_fill_(d.keep.logical_not(), 0.0);
  // Always the IEEE-exact product (NaN/Inf in V reach only rows that give the key weight, so keys no
  // query sees need no zeroing): asking whether V holds a NaN first would sync the stream (no graph capture).
  at::Tensor out = weighted_values_ieee(probs, d.v, at::isfinite(d.v).logical_not());
  out.masked_fill_(finite.logical_not().unsqueeze(-1), 0.0);
  c.out.copy_(out);
  c.lse.copy_(lse.masked_fill(finite.logical_not(), -std::numeric_limits<float>::infinity()));
}

std::tuple<at::Tensor, at::Tensor> fwd_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                            const std::optional<at::Tensor>& mask, std::optional<double> scale,
                                            int64_t causal, c10::string_view kernel, c10::string_view precision) {
  const c10::cuda::CUDAGuard guard(q.device());
  ForwardCall c = prepare_forward(q, k, v, mask, scale, causal, std::string(precision));
  const KernelChoice choice = choose_cuda_kernel(c.params, std::string(kernel), q.device().index());
  if (c.empty) return {c.out, c.lse};
  const CudaKernel* kern = find_kernel(choice.name);
  if (kern->launch == nullptr) {
    naive_cuda(c);
  } else {
    kern->launch(c.params, c10::cuda::getCurrentCUDAStream(q.device().index()).stream());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {c.out, c.lse};
}

// The backward with dense float32 matrices (O(L*S) memory): P from the saved LSE, then
// dV = P^T dO, dS = P (dO V^T - D), dQ = scale dS K, dK = scale dS^T Q, summed over GQA groups.
// The reference (kernel='naive'), and the fallback where neither the tensor-core backward nor
// bwd_simple takes a call (FLASH_ATTN_EXT_BWD_SIMPLE=dense, or a device without the shared memory).
// It computes its own D = rowsum(dO * O) - dlse with ATen, independent of the pre-pass kernel it checks.
void dense_bwd_cuda(const BackwardCall& c) {
  const FwdParams& p = c.fwd.params;
  DenseScores d = dense_scores(c.fwd);
  at::Tensor row_lse = c.fwd.lse.unsqueeze(-1);
  at::Tensor probs = at::exp(d.scores - at::where(at::isfinite(row_lse), row_lse, at::zeros({}, row_lse.options())));
  probs.masked_fill_(d.keep.logical_not().logical_or(at::isinf(row_lse)), 0.0);
  at::Tensor dO = c.dout.to(at::kFloat);
  at::Tensor delta = (dO * c.fwd.out.to(at::kFloat)).sum(-1);
  if (c.dlse.defined()) delta.sub_(c.dlse);
  at::Tensor dS = probs * (at::matmul(dO, d.v.transpose(-1, -2)) - delta.unsqueeze(-1));
  at::Tensor dv = at::matmul(probs.transpose(-1, -2), dO);
  at::Tensor dk = at::matmul(dS.transpose(-1, -2), d.q).mul_(p.scale_f64);
  if (p.group > 1) {
    dv = dv.unflatten(1, {p.Hkv, p.group}).sum(2);
    dk = dk.unflatten(1, {p.Hkv, p.group}).sum(2);
  }
  c.dq.copy_(at::matmul(dS, d.k).mul_(p.scale_f64));
  c.dk.copy_(dk);
  c.dv.copy_(dv);
  if (c.dscores.defined()) c.dscores.copy_(dS);
}

// D = rowsum(dO * O) - dlse into c.delta, and dq_accum (float32 (B, H, L, E), or nullptr) zeroed:
// the pre-pass every CUDA backward runs first (kernels/bwd_prep.cu).
void run_bwd_prep(const BackwardCall& c, float* dq_accum, cudaStream_t stream) {
  cuda::launch_bwd_prep(c.params, c.dlse.defined() ? c.dlse.data_ptr<float>() : nullptr, c.delta.data_ptr<float>(),
                        dq_accum, stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// The tensor-core backwards: O(L + S) extra memory. dQ is summed with float32 atomics into a buffer
// converted to q's dtype afterwards, except in deterministic mode, where bwd_mma's Q-major kernel writes
// it without atomics (bitwise reproducible). hopper: choose_cuda_backward picked bwd_wgmma from q, k and v;
// dout's rows are checked here, and where they are not TMA-legal (or the driver refuses a tensor map)
// nothing of bwd_wgmma ran and bwd_mma takes the call.
void tensor_core_bwd_cuda(const BackwardCall& c, int device_index, bool hopper) {
  const BwdParams& bp = c.params;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device_index).stream();
  // Where dQ is summed: nowhere in deterministic mode (bwd_mma's Q-major kernel writes dq), in dq
  // itself for float32 (contiguous (B, H, L, E) float32), else in a float32 buffer copied into dq.
  at::Tensor dq_accum;
  float* accum = nullptr;
  if (!at::globalContext().deterministicAlgorithms()) {
    if (bp.fwd.dtype != ScalarKind::kFloat32) dq_accum = at::empty(c.dq.sizes(), c.dq.options().dtype(at::kFloat));
    accum = dq_accum.defined() ? dq_accum.data_ptr<float>() : c.dq.data_ptr<float>();
  }
  run_bwd_prep(c, accum, stream);
  bool done = false;
  if (hopper && cuda::bwd_wgmma_supports(bp, device_sm(device_index), /*check_dout=*/true, nullptr)) {
    done = cuda::launch_bwd_wgmma(bp, accum, stream);
    if (!done)
      TORCH_WARN_ONCE("flash_attention: the driver refused a TMA tensor map for the wgmma backward; running bwd_mma");
  }
  if (!done) cuda::launch_bwd_mma(bp, accum, stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (dq_accum.defined()) c.dq.copy_(dq_accum);
}

// The CUDA-core backward (kernels/bwd_simple): O(L + S) extra memory, dQ by a query-major kernel and
// dK/dV by a key-major one, no atomics (bitwise reproducible in every mode). What the tensor-core
// backward does not take: head dims above 128, float32_precision='ieee', devices below sm80.
void simple_bwd_cuda(const BackwardCall& c, int device_index) {
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device_index).stream();
  run_bwd_prep(c, nullptr, stream);
  cuda::launch_bwd_simple(c.params, stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

int max_smem_optin(int device_index) {
  int bytes = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device_index));
  return bytes;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> bwd_cuda(
    const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& out,
    const at::Tensor& lse, const std::optional<at::Tensor>& dlse, const std::optional<at::Tensor>& mask,
    std::optional<double> scale, int64_t causal, c10::string_view kernel, bool mask_grad,
    c10::string_view precision) {
  const c10::cuda::CUDAGuard guard(q.device());
  BackwardCall c =
      prepare_backward(dout, q, k, v, out, lse, dlse, mask, scale, causal, mask_grad, std::string(precision),
                       /*delta_by_backend=*/true);
  const std::string name(kernel);
  choose_cuda_kernel(c.fwd.params, name, q.device().index());  // validates the name
  at::Tensor dscores = c.dscores.defined() ? c.dscores : at::empty({0}, q.options().dtype(at::kFloat));
  if (c.empty) return {c.dq, c.dk, c.dv, dscores};
  const std::string backward = choose_cuda_backward(c.fwd.params, name, q.device().index()).name;
  if (backward == "bwd_mma" || backward == "bwd_wgmma")
    tensor_core_bwd_cuda(c, q.device().index(), backward == "bwd_wgmma");
  else if (backward == "bwd_simple")
    simple_bwd_cuda(c, q.device().index());
  else
    dense_bwd_cuda(c);
  return {c.dq, c.dk, c.dv, dscores};
}

}  // namespace

std::vector<KernelInfo> cuda_kernel_list() {
  std::vector<KernelInfo> out;
  for (const CudaKernel& k : kCudaKernels) out.push_back({k.name, "cuda", k.summary});
  return out;
}

KernelChoice choose_cuda_kernel(const FwdParams& p, const std::string& requested, int device_index) {
  const int sm = device_sm(device_index);
  if (requested != "auto") {
    const CudaKernel* k = find_kernel(requested);
    TORCH_CHECK_VALUE(k != nullptr, "flash_attention: kernel='", requested,
                      "' is not a CUDA kernel; expected 'auto' or one of naive, v0_naive, v1_tiled, v2_warp, v3_mma, v4_wgmma");
    TORCH_CHECK_VALUE(sm >= k->min_sm, "flash_attention: kernel='", requested, "' needs compute capability ",
                      k->min_sm / 10, ".", k->min_sm % 10, " or newer; this device is ", sm / 10, ".", sm % 10);
    TORCH_CHECK_VALUE(!(std::string(k->name) == "v3_mma" && p.dtype == ScalarKind::kFloat32 &&
                        p.precision == Float32Precision::kIeee),
                      "flash_attention: kernel='v3_mma' runs float32 on tensor cores (3xTF32 or TF32) and cannot "
                      "honour float32_precision='ieee'; use float32_precision='auto', '3xtf32' or 'tf32', or a "
                      "CUDA-core kernel");
    if (std::string(k->name) == "v4_wgmma") {
      std::string why;
      TORCH_CHECK_VALUE(cuda::v4_wgmma_supports(p, sm, &why), "flash_attention: kernel='v4_wgmma' ", why);
    }
    return {k->name, "requested by name"};
  }
  std::string v4_why;
  if (cuda::v4_wgmma_supports(p, sm, &v4_why)) {
    if (p.dtype == ScalarKind::kFloat32)
      return {"v4_wgmma", std::string(p.precision == Float32Precision::kAuto
                                          ? "sm_90, float32, E == Ev <= 128 (run on the next of 64, 128 columns), no "
                                            "mask, 16-byte aligned rows: the Hopper rung on "
                                          : "sm_90, float32, E == Ev in {64, 128}, no mask, 16-byte aligned rows: the "
                                            "Hopper rung on ") +
                              (p.precision == Float32Precision::kTf32
                                   ? "TF32 tensor cores (float32_precision='tf32'; V transposed by its producer "
                                     "warpgroup)"
                               : p.precision == Float32Precision::k3xTf32
                                   ? "3xTF32 tensor cores (float32-accurate: each operand as two TF32 halves, three "
                                     "products per product)"
                                   : "3xF16 tensor cores (float32-accurate, float32_precision='auto': each block of "
                                     "Q, K, V scaled by a power of two into fp16's range, each operand as two fp16 "
                                     "halves, three products per product)")};
    return {"v4_wgmma", std::string("sm_90, 16-bit, E == Ev <= 256 (run on the next of 64, 128, 192, 256 columns), ") +
                            (p.mask_kind == MaskKind::kBool
                                 ? "a bool mask (packed to bits and classified per 128 x 128 tile once per call)"
                                 : "no mask") +
                            ", TMA-aligned rows: the Hopper rung is the fastest"};
  }
  if (sm >= 80) {
    if (p.dtype != ScalarKind::kFloat32)
      return {"v3_mma", "sm80+ and 16-bit inputs: the tensor-core rung is the fastest" +
                            (sm == 90 ? " (v4_wgmma " + v4_why + ")" : std::string())};
    if (p.precision != Float32Precision::kIeee)
      return {"v3_mma", "sm80+ float32 with tensor cores allowed (3xTF32 unless float32_precision='tf32')" +
                            (sm == 90 ? " (v4_wgmma " + v4_why + ")" : std::string())};
    return {"v2_warp", "float32_precision='ieee' keeps float32 on CUDA cores: the warp-cooperative rung"};
  }
  return {"v2_warp", "no tensor-core rung below sm80: the warp-cooperative rung is the fastest"};
}

namespace {

// Where the tensor-core backward does not go: bwd_simple (CUDA cores, O(L + S) memory) unless
// FLASH_ATTN_EXT_BWD_SIMPLE=dense asks for the dense path (benchmarks, A/B checks) or the device
// cannot host its tiles.
KernelChoice simple_or_dense(const BwdParams& bp, const std::string& mma_why, int device_index) {
  const std::string because = mma_why.empty() ? std::string() : "the tensor-core backward " + mma_why + ": ";
  const char* env = std::getenv("FLASH_ATTN_EXT_BWD_SIMPLE");
  if (env != nullptr && std::string(env) == "dense")
    return {"dense", because + "FLASH_ATTN_EXT_BWD_SIMPLE=dense: dense float32 backward (O(L*S) memory)"};
  std::string why;
  if (cuda::bwd_simple_supports(bp, max_smem_optin(device_index), &why))
    return {"bwd_simple", because + "CUDA-core backward bwd_simple (float32 FMAs, O(L+S) memory, key-major dK/dV "
                                    "and query-major dQ kernels, no atomics: bitwise reproducible)"};
  return {"dense", because + "bwd_simple " + why + ": dense float32 backward (O(L*S) memory)"};
}

}  // namespace

KernelChoice choose_cuda_backward(const FwdParams& p, const std::string& requested, int device_index) {
  if (requested == "naive") return {"dense", "kernel='naive': the dense float32 reference backward (O(L*S) memory)"};
  BwdParams bp;
  bp.fwd = p;
  std::string why;
  const int sm = device_sm(device_index);
  // FLASH_ATTN_EXT_BWD_F32=dense: float32 keeps the dense backward (what it ran before the float32
  // kernels; for benchmarks and A/B checks).
  const char* f32_env = std::getenv("FLASH_ATTN_EXT_BWD_F32");
  if (p.dtype == ScalarKind::kFloat32 && f32_env != nullptr && std::string(f32_env) == "dense")
    return {"dense", "FLASH_ATTN_EXT_BWD_F32=dense: dense float32 backward (O(L*S) memory)"};
  // FLASH_ATTN_EXT_BWD_SIMPLE=force: every call bwd_simple takes goes there (tests of its mask, tail
  // and GQA handling at head dims the tensor-core backward would take).
  const char* simple_env = std::getenv("FLASH_ATTN_EXT_BWD_SIMPLE");
  if (simple_env != nullptr && std::string(simple_env) == "force") {
    std::string simple_why;
    if (cuda::bwd_simple_supports(bp, max_smem_optin(device_index), &simple_why))
      return {"bwd_simple", "FLASH_ATTN_EXT_BWD_SIMPLE=force: CUDA-core backward bwd_simple (O(L+S) memory)"};
  }
  if (cuda::bwd_mma_supports(bp, sm, &why)) {
    const std::string tiled = "tiled tensor-core backward (FlashAttention-2 split, O(L+S) memory)";
    const std::string variant = cuda::bwd_mma_variant();
    if (p.dtype == ScalarKind::kFloat32)
      return {"bwd_mma", tiled + ", float32 kernels on " +
                             (p.precision == Float32Precision::kTf32
                                  ? std::string("TF32 (float32_precision='tf32')")
                                  : std::string("3xTF32 (error-compensated, float32-accurate)")) +
                             (at::globalContext().deterministicAlgorithms()
                                  ? ", deterministic: Q-major dQ kernel without atomics"
                                  : ", dQ by float32 reductions into dq")};
    if (variant != "wgmma") return {"bwd_mma", tiled + ", dK/dV kernel " + variant};
    // The default: the Hopper kernel where it applies, else v5 and why. explain() sees only q, k and
    // v: dout's rows are checked at the call (tensor_core_bwd_cuda), which runs v5 where they are not
    // TMA-legal.
    std::string wg_why;
    if (at::globalContext().deterministicAlgorithms())
      wg_why = "computes dQ with float32 reductions, not bitwise reproducible: deterministic mode keeps bwd_mma";
    else if (cuda::bwd_wgmma_supports(bp, sm, /*check_dout=*/false, &wg_why))
      return {"bwd_wgmma", "Hopper tensor-core backward bwd_wgmma (TMA + wgmma, warp-specialised, dK/dV/dQ in one "
                           "kernel, O(L+S) memory; bwd_mma's v5 where the gradient's rows are not TMA-aligned)"};
    else
      wg_why = "bwd_wgmma " + wg_why;
    return {"bwd_mma", tiled + ", dK/dV kernel v5 (" + wg_why + ")"};
  }
  return simple_or_dense(bp, why, device_index);
}

TORCH_LIBRARY_IMPL(flash_attn_ext, CUDA, m) {
  m.impl("fwd", &fwd_cuda);
  m.impl("bwd", &bwd_cuda);
}

}  // namespace flash_attn_ext
