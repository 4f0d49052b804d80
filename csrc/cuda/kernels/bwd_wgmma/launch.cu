// launch_bwd_wgmma and the input rule of the Hopper backward: which calls it takes (the rest keep
// bwd_mma, and explain() says why).
#include <cstdint>
#include <string>

#include "../../launch.h"
#include "../../ptx/tma_host.h"
#include "config.h"
#include "run.h"

namespace flash_attn_ext::cuda {
namespace {

template <bool BF16, bool CAUSAL>
bool run_e(const BwdParams& p, float* dq_accum, cudaStream_t s) {
  return p.fwd.E == 64 ? bwdwg::run_bwdwg<BF16, 64, CAUSAL>(p, dq_accum, s)
                       : bwdwg::run_bwdwg<BF16, 128, CAUSAL>(p, dq_accum, s);
}

}  // namespace

bool bwd_wgmma_supports(const BwdParams& bp, int sm, bool check_dout, std::string* why) {
  const FwdParams& p = bp.fwd;
  auto no = [&](const char* reason) {
    if (why) *why = reason;
    return false;
  };
  if (sm != 90) return no("needs compute capability 9.0 exactly (sm_90a instructions)");
  if (p.dtype != ScalarKind::kBFloat16 && p.dtype != ScalarKind::kFloat16) return no("takes float16/bfloat16 only");
  if (p.E != p.Ev || (p.E != 64 && p.E != 128)) return no("takes E == Ev in {64, 128} only");
  if (p.mask_kind != MaskKind::kNone) return no("takes no mask");
  if (!tma::rows_ok16(p.q, p.q_sl, p.L, p.q_sh, p.H, p.q_sb, p.B) ||
      !tma::rows_ok16(p.k, p.k_sl, p.S, p.k_sh, p.Hkv, p.k_sb, p.B) ||
      !tma::rows_ok16(p.v, p.v_sl, p.S, p.v_sh, p.Hkv, p.v_sb, p.B))
    return no("needs 16-byte aligned q/k/v rows and strides (TMA)");
  if (check_dout && !tma::rows_ok16(bp.dout, bp.do_sl, p.L, bp.do_sh, p.H, bp.do_sb, p.B))
    return no("needs 16-byte aligned dout rows and strides (TMA)");
  const int64_t kv_blocks = (p.S + bwdwg::kBlockN - 1) / bwdwg::kBlockN * p.B * p.Hkv;
  const int64_t items = (p.L + bwdwg::kBlockM - 1) / bwdwg::kBlockM * p.group;
  if (p.L >= (int64_t(1) << 30) || p.S >= (int64_t(1) << 30) || kv_blocks >= (int64_t(1) << 31) ||
      items >= (int64_t(1) << 31))
    return no("sizes beyond 32-bit tile indices");
  return true;
}

bool launch_bwd_wgmma(const BwdParams& p, float* dq_accum, cudaStream_t stream) {
  const bool causal = p.fwd.causal != CausalMode::kNone;
  if (p.fwd.dtype == ScalarKind::kBFloat16)
    return causal ? run_e<true, true>(p, dq_accum, stream) : run_e<true, false>(p, dq_accum, stream);
  return causal ? run_e<false, true>(p, dq_accum, stream) : run_e<false, false>(p, dq_accum, stream);
}

}  // namespace flash_attn_ext::cuda
