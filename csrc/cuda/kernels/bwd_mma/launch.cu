// launch_bwd_mma: decides whether the tensor-core backward takes a call, picks the head-dim
// bucket, derives the per-call flags (alignment, grid sizes) and calls the matching explicit
// instantiation.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "../../launch.h"
#include "run.h"
#include "tile_sizes.h"

namespace flash_attn_ext::cuda {
namespace bwd {
namespace {

int bucket(int64_t d) {
  for (int b : kBuckets)
    if (d <= b) return b;
  return kMaxHeadDim;
}

// 16-byte copies need a 16-byte aligned base and every stride a whole number of 16 bytes.
bool vec_ok(const void* ptr, int64_t cols, int64_t sb, int64_t sh, int64_t sl, int64_t per) {
  // per: elements per 16 bytes (8 for 16-bit, 4 for float32)
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0 && cols % per == 0 && sb % per == 0 && sh % per == 0 &&
         sl % per == 0;
}

template <bool BF16, bool CAUSAL>
void run_bucket(const BwdArgs& a, int hd, cudaStream_t s) {
  switch (hd) {
    case 32: return run_bwd<BF16, 32, CAUSAL>(a, s);
    case 64: return run_bwd<BF16, 64, CAUSAL>(a, s);
    case 96: return run_bwd<BF16, 96, CAUSAL>(a, s);
    default: return run_bwd<BF16, 128, CAUSAL>(a, s);
  }
}

template <bool X3, bool CAUSAL>
void run_bucket_f32(const BwdArgs& a, int hd, cudaStream_t s) {
  switch (hd) {
    case 32: return run_bwd_f32<X3, 32, CAUSAL>(a, s);
    case 64: return run_bwd_f32<X3, 64, CAUSAL>(a, s);
    case 96: return run_bwd_f32<X3, 96, CAUSAL>(a, s);
    default: return run_bwd_f32<X3, 128, CAUSAL>(a, s);
  }
}

template <bool X3>
void run_f32(const BwdArgs& a, int hd, cudaStream_t s) {
  if (a.p.fwd.causal == CausalMode::kNone) run_bucket_f32<X3, false>(a, hd, s);
  else run_bucket_f32<X3, true>(a, hd, s);
}

template <bool BF16>
void run_dtype(const BwdArgs& a, int hd, cudaStream_t s) {
  if (a.p.fwd.causal == CausalMode::kNone) run_bucket<BF16, false>(a, hd, s);
  else run_bucket<BF16, true>(a, hd, s);
}

}  // namespace
}  // namespace bwd

bool bwd_mma_supports(const BwdParams& bp, int sm, std::string* why) {
  const FwdParams& p = bp.fwd;
  if (sm < 80) { *why = "needs sm80+ (mma.sync m16n8k16)"; return false; }
  if (p.dtype == ScalarKind::kFloat32 && p.precision == Float32Precision::kIeee) {
    *why = "runs float32 on tensor cores (TF32 / 3xTF32) and float32_precision='ieee' forbids them";
    return false;
  }
  if (p.dtype != ScalarKind::kFloat16 && p.dtype != ScalarKind::kBFloat16 && p.dtype != ScalarKind::kFloat32) {
    *why = "takes float16, bfloat16 and float32 only";
    return false;
  }
  if ((p.E > p.Ev ? p.E : p.Ev) > bwd::kMaxHeadDim) {
    *why = "keeps dK and dV rows in registers: max(E, Ev) must be <= 128";
    return false;
  }
  const bool f32 = p.dtype == ScalarKind::kFloat32;
  const int64_t bn = f32 ? bwd::TileSizesF32<32>::kBlockN : bwd::TileSizes<32>::kBlockN;
  const int64_t bm = f32 ? bwd::DqTileSizesF32<32>::kBlockM : bwd::DqTileSizes<32>::kBlockM;
  const int64_t kv_blocks = (p.S + bn - 1) / bn * p.B * p.Hkv;
  const int64_t q_blocks = (p.L + bm - 1) / bm * p.B * p.H;
  if (kv_blocks > INT32_MAX || q_blocks > INT32_MAX) { *why = "needs fewer than 2^31 CTAs"; return false; }
  return true;
}

const char* bwd_mma_variant() {
  const char* v = std::getenv("FLASH_ATTN_EXT_BWD_VARIANT");
  if (v != nullptr && std::strcmp(v, "v4") == 0) return "v4";
  if (v != nullptr && std::strcmp(v, "v5") == 0) return "v5";
  if (v != nullptr && std::strcmp(v, "v5x2") == 0) return "v5x2";
  return "wgmma";  // where bwd_wgmma does not take the call, launch_bwd_mma runs v5 (see launch.h)
}

// q (B, H, L, E), k/v (B, Hkv, S, E/Ev), dout (B, H, L, Ev) -> dk, dv, and dq_accum (float32
// (B, H, L, E), zeroed by the caller; for float32 inputs it may be dq itself; nullptr:
// deterministic, dq written directly).
void launch_bwd_mma(const BwdParams& bp, float* dq_accum, cudaStream_t stream) {
  const FwdParams& p = bp.fwd;
  // Block sizes are the same for every bucket (per dtype class).
  const bool f32 = p.dtype == ScalarKind::kFloat32;
  const int64_t bn = f32 ? bwd::TileSizesF32<32>::kBlockN : bwd::TileSizes<32>::kBlockN;
  const int64_t bm = f32 ? bwd::DqTileSizesF32<32>::kBlockM : bwd::DqTileSizes<32>::kBlockM;
  const int64_t per = f32 ? 4 : 8;
  bwd::BwdArgs a;
  a.p = bp;
  a.dq_accum = dq_accum;
  a.n_kblocks = (p.S + bn - 1) / bn;
  a.n_qblocks = (p.L + bm - 1) / bm;
  a.q_vec = bwd::vec_ok(p.q, p.E, p.q_sb, p.q_sh, p.q_sl, per);
  a.k_vec = bwd::vec_ok(p.k, p.E, p.k_sb, p.k_sh, p.k_sl, per);
  a.v_vec = bwd::vec_ok(p.v, p.Ev, p.v_sb, p.v_sh, p.v_sl, per);
  a.do_vec = bwd::vec_ok(bp.dout, p.Ev, bp.do_sb, bp.do_sh, bp.do_sl, per);
  a.dq_vec4 = p.E % 4 == 0;
  const std::string variant = bwd_mma_variant();
  a.variant = variant == "v4"     ? bwd::BwdVariant::kV4
              : variant == "v5x2" ? bwd::BwdVariant::kV5x2
                                  : bwd::BwdVariant::kV5;
  const int hd = bwd::bucket(p.E > p.Ev ? p.E : p.Ev);
  if (f32) {
    // One float32 kernel pair (no v4/v5/v5x2 variants); 3xTF32 unless float32_precision='tf32'.
    if (p.precision == Float32Precision::kTf32) bwd::run_f32<false>(a, hd, stream);
    else bwd::run_f32<true>(a, hd, stream);
    return;
  }
  if (p.dtype == ScalarKind::kBFloat16) bwd::run_dtype<true>(a, hd, stream);
  else bwd::run_dtype<false>(a, hd, stream);
}

}  // namespace flash_attn_ext::cuda
