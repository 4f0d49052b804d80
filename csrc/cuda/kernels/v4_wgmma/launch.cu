// launch_v4_wgmma and the rung's input rule: which calls the Hopper kernel takes.
#include <cstdint>
#include <string>
#include <type_traits>

#include "../../launch.h"
#include "../../ptx/tma_host.h"
#include "mask_bits.cuh"
#include "run.h"

namespace flash_attn_ext::cuda {
namespace {

// Head dims run on the next of 64, 128, 192, 256 (zeros past p.E: the TMA's fill, prepare() in launch_template.cuh,
// or the 3xF16 kernel's own loads).
// float32 runs on TF32 (float32_precision='tf32'), float32-accurate 3xTF32 ('3xtf32') or float32-accurate 3xF16
// ('auto': half 3xTF32's tensor and shared-memory cost per product, as accurate; benchmarks/NOTES_v4.md).
template <typename T, bool CAUSAL>
bool run_e(const FwdParams& p, cudaStream_t s) {
  if constexpr (std::is_same<T, float>::value) {
    if (p.precision == Float32Precision::kAuto)
      return p.E <= 64 ? v4::run_v4_f16x3<64, CAUSAL>(p, s) : v4::run_v4_f16x3<128, CAUSAL>(p, s);
    if (p.precision == Float32Precision::k3xTf32)
      return p.E <= 64 ? v4::run_v4_f32x3<64, CAUSAL>(p, s) : v4::run_v4_f32x3<128, CAUSAL>(p, s);
  }
  if (p.E <= 64) return v4::run_v4<T, 64, CAUSAL>(p, s);
  if (p.E <= 128) return v4::run_v4<T, 128, CAUSAL>(p, s);
  if constexpr (std::is_same<T, float>::value) return false;
  else if (p.E <= 192) return v4::run_v4<T, 192, CAUSAL>(p, s);
  else return v4::run_v4<T, 256, CAUSAL>(p, s);
}

}  // namespace

bool v4_wgmma_supports(const FwdParams& p, int sm, std::string* why) {
  auto no = [&](const char* reason) {
    if (why) *why = reason;
    return false;
  };
  if (sm != 90) return no("needs compute capability 9.0 exactly (sm_90a instructions)");
  const bool f32 = p.dtype == ScalarKind::kFloat32;
  if (f32) {
    if (p.precision == Float32Precision::kIeee)
      return no(
          "runs float32 on tensor cores (3xF16, 3xTF32 or TF32); float32_precision='ieee' keeps it on CUDA cores");
    if (p.precision == Float32Precision::kAuto) {
      if (p.E != p.Ev || p.E > 128)
        return no("takes float32 at E == Ev <= 128 only (3xF16 on the next of 64, 128 columns)");
    } else if (p.E != p.Ev || (p.E != 64 && p.E != 128)) {
      return no("takes float32 at E == Ev in {64, 128} only with float32_precision='tf32' or '3xtf32'");
    }
    if (p.mask_kind != MaskKind::kNone) return no("takes float32 without a mask only (masks run on v3_mma)");
  } else if (p.dtype != ScalarKind::kBFloat16 && p.dtype != ScalarKind::kFloat16) {
    return no("takes float16/bfloat16, or float32 with float32_precision='tf32'");
  }
  if (p.E != p.Ev || p.E > 256) return no("takes E == Ev up to 256 only (run on 64, 128, 192 or 256 columns)");
  if (p.mask_kind == MaskKind::kFloat)
    return no("takes bool masks but not float (additive) masks yet: those run on v3_mma");
  if (p.mask_kind == MaskKind::kBool) {
    if (p.E > 128) return no("takes bool masks at E <= 128 only (no masked E = 256 kernel yet)");
    const v4::MaskLayout lay = v4::MaskLayout::make(p.B, p.H, p.L, p.S, p.m_sb, p.m_sh);
    if (lay.MB * lay.MH * lay.MT * lay.NT >= (int64_t(1) << 31) - 1 || lay.NT >= (int64_t(1) << 24))
      return no("takes bool masks only up to 2^31 128 x 128 mask tiles");
  }
  // The float32 kernels read V (3xTF32: Q, K and V) with plain loads instead of the TMA: the same rule.
  const int64_t es = f32 ? 4 : 2;
  if (!tma::rows_ok(p.q, es, p.q_sl, p.L, p.q_sh, p.H, p.q_sb, p.B) ||
      !tma::rows_ok(p.k, es, p.k_sl, p.S, p.k_sh, p.Hkv, p.k_sb, p.B) ||
      !tma::rows_ok(p.v, es, p.v_sl, p.S, p.v_sh, p.Hkv, p.v_sb, p.B))
    return no("needs 16-byte aligned q/k/v rows and strides (TMA)");
  if (reinterpret_cast<uintptr_t>(p.out) % (2 * es) != 0 || p.o_sl % 2 != 0 || p.o_sh % 2 != 0 || p.o_sb % 2 != 0)
    return no("needs output pairs aligned to their size (4 bytes 16-bit, 8 float32)");
  const int64_t tiles = (p.L + 127) / 128 * p.B * p.H;
  if (p.L >= (int64_t(1) << 31) - 256 || p.S >= (int64_t(1) << 31) - 256 || tiles >= (int64_t(1) << 31))
    return no("sizes beyond 32-bit tile indices");
  return true;
}

int64_t v4_wgmma_workspace_bytes(const FwdParams& p) {
  if (p.mask_kind != MaskKind::kBool) return 0;
  return v4::MaskLayout::make(p.B, p.H, p.L, p.S, p.m_sb, p.m_sh).bytes;
}

bool launch_v4_wgmma(const FwdParams& p, cudaStream_t stream, void* workspace) {
  if (p.mask_kind == MaskKind::kBool) {
    if (workspace == nullptr) return false;
    if (p.dtype == ScalarKind::kBFloat16)
      return p.E <= 64 ? v4::run_v4_masked<__nv_bfloat16, 64>(p, workspace, stream)
                       : v4::run_v4_masked<__nv_bfloat16, 128>(p, workspace, stream);
    return p.E <= 64 ? v4::run_v4_masked<__half, 64>(p, workspace, stream)
                     : v4::run_v4_masked<__half, 128>(p, workspace, stream);
  }
  const bool causal = p.causal != CausalMode::kNone;
  if (p.dtype == ScalarKind::kFloat32)
    return causal ? run_e<float, true>(p, stream) : run_e<float, false>(p, stream);
  if (p.dtype == ScalarKind::kBFloat16)
    return causal ? run_e<__nv_bfloat16, true>(p, stream) : run_e<__nv_bfloat16, false>(p, stream);
  return causal ? run_e<__half, true>(p, stream) : run_e<__half, false>(p, stream);
}

}  // namespace flash_attn_ext::cuda
