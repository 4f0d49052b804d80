// launch_bwd_wgmma and the input rule of the Hopper backward: which calls it takes (the rest keep
// bwd_mma, and explain() says why).
#include <cstdint>
#include <string>

#include "../../launch.h"
#include "config.h"
#include "run.h"

namespace flash_attn_ext::cuda {
namespace {

// TMA reads a row only from a 16-byte aligned address with 16-byte multiple strides; a size-1
// dimension's stride is never used.
bool tma_ok(const void* ptr, int64_t s_row, int64_t rows, int64_t s_head, int64_t heads, int64_t s_batch,
            int64_t batch) {
  auto ok = [](int64_t stride, int64_t n) { return n == 1 || (stride > 0 && stride % 8 == 0); };
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0 && ok(s_row, rows) && ok(s_head, heads) && ok(s_batch, batch);
}

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
  if (!tma_ok(p.q, p.q_sl, p.L, p.q_sh, p.H, p.q_sb, p.B) || !tma_ok(p.k, p.k_sl, p.S, p.k_sh, p.Hkv, p.k_sb, p.B) ||
      !tma_ok(p.v, p.v_sl, p.S, p.v_sh, p.Hkv, p.v_sb, p.B))
    return no("needs 16-byte aligned q/k/v rows and strides (TMA)");
  if (check_dout && !tma_ok(bp.dout, bp.do_sl, p.L, bp.do_sh, p.H, bp.do_sb, p.B))
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
