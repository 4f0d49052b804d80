// launch_v3_mma: picks the operand mode, head-dim bucket and rows per warp, derives the
// per-call flags (alignment, prescale) and calls the matching explicit instantiation.
// FLASH_ATTN_EXT_V3_ROWS=16|32 (read on every call, so one process can A/B them) overrides
// the per-bucket default rows per warp (default_rows in tile_sizes.h); float32 modes and
// buckets above kMaxHdRows32 have no 32-row variant and always run 16.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "../../launch.h"
#include "../causal_order.h"
#include "run.h"

namespace flash_attn_ext::cuda {
namespace v3 {

namespace {

// Whether a 32-rows-per-warp instantiation exists for (mode, bucket).
template <Mode M, int HD>
constexpr bool has_rows32() {
  return !is_fp32(M) && HD <= kMaxHdRows32;
}

template <Mode M, int HD>
int block_m_hd(int rows) {
  if constexpr (has_rows32<M, HD>()) {
    if (rows == 32) return TileSizes<M, HD, 32>::kBlockM;
  }
  return TileSizes<M, HD, 16>::kBlockM;
}

template <Mode M>
int block_m_of(int hd, int rows) {
  switch (hd) {
    case 32: return block_m_hd<M, 32>(rows);
    case 64: return block_m_hd<M, 64>(rows);
    case 96: return block_m_hd<M, 96>(rows);
    case 128: return block_m_hd<M, 128>(rows);
    case 160: return block_m_hd<M, 160>(rows);
    case 192: return block_m_hd<M, 192>(rows);
    default: return block_m_hd<M, 256>(rows);
  }
}

}  // namespace

int block_m(Mode mode, int hd, int rows) {
  switch (mode) {
    case Mode::kF16: return block_m_of<Mode::kF16>(hd, rows);
    case Mode::kBF16: return block_m_of<Mode::kBF16>(hd, rows);
    case Mode::kTf32: return block_m_of<Mode::kTf32>(hd, rows);
    default: return block_m_of<Mode::kTf32x3>(hd, rows);
  }
}

namespace {

int bucket(int64_t d) {
  for (int b : kBuckets)
    if (d <= b) return b;
  return 256;
}

// Rows per warp for this call: the environment's choice if it names one that exists, else the bucket's default.
int rows_per_warp(Mode mode, int hd) {
  const bool fp32 = is_fp32(mode);
  if (fp32 || hd > kMaxHdRows32) return 16;
  const char* env = std::getenv("FLASH_ATTN_EXT_V3_ROWS");
  if (env != nullptr && std::strcmp(env, "16") == 0) return 16;
  if (env != nullptr && std::strcmp(env, "32") == 0) return 32;
  return default_rows(fp32, hd);
}

// 16-byte copies need a 16-byte aligned base and every stride a whole number of 16 bytes.
bool vec_ok(const void* ptr, int64_t elem_bytes, int64_t cols, int64_t sb, int64_t sh, int64_t sl) {
  const int64_t per = 16 / elem_bytes;
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0 && cols % per == 0 && sb % per == 0 && sh % per == 0 &&
         sl % per == 0;
}

template <Mode M, int HD, bool CAUSAL>
void run_hd(const V3Args& a, int rows, cudaStream_t s) {
  if constexpr (has_rows32<M, HD>()) {
    if (rows == 32) return run_v3<M, HD, CAUSAL, 32>(a, s);
  }
  run_v3<M, HD, CAUSAL, 16>(a, s);
}

template <Mode M, bool CAUSAL>
void run_bucket(const V3Args& a, int hd, int rows, cudaStream_t s) {
  switch (hd) {
    case 32: return run_hd<M, 32, CAUSAL>(a, rows, s);
    case 64: return run_hd<M, 64, CAUSAL>(a, rows, s);
    case 96: return run_hd<M, 96, CAUSAL>(a, rows, s);
    case 128: return run_hd<M, 128, CAUSAL>(a, rows, s);
    case 160: return run_hd<M, 160, CAUSAL>(a, rows, s);
    case 192: return run_hd<M, 192, CAUSAL>(a, rows, s);
    default: return run_hd<M, 256, CAUSAL>(a, rows, s);
  }
}

template <Mode M>
void run_mode(const V3Args& a, int hd, int rows, cudaStream_t s) {
  if (a.p.causal == CausalMode::kNone) run_bucket<M, false>(a, hd, rows, s);
  else run_bucket<M, true>(a, hd, rows, s);
}

}  // namespace
}  // namespace v3

void launch_v3_mma(const FwdParams& p, cudaStream_t stream) {
  using v3::Mode;
  Mode mode = Mode::kF16;
  if (p.dtype == ScalarKind::kBFloat16) mode = Mode::kBF16;
  // The host's kernel choice never sends kIeee here; anything else on float32 but plain
  // TF32 gets the accurate 3xTF32 products.
  if (p.dtype == ScalarKind::kFloat32) mode = p.precision == Float32Precision::kTf32 ? Mode::kTf32 : Mode::kTf32x3;

  const int hd = v3::bucket(p.E > p.Ev ? p.E : p.Ev);
  const int rows = v3::rows_per_warp(mode, hd);
  const int bm = v3::block_m(mode, hd, rows);
  const int64_t eb = p.dtype == ScalarKind::kFloat32 ? 4 : 2;
  v3::V3Args a;
  a.p = p;
  a.n_qblocks = (p.L + bm - 1) / bm;
  a.head_group = head_group_for(p.B * p.H, heads_in_l2(std::max<int64_t>(p.S, 1) * (p.E + p.Ev) * eb, p.group));
  a.q_vec = v3::vec_ok(p.q, eb, p.E, p.q_sb, p.q_sh, p.q_sl);
  a.k_vec = v3::vec_ok(p.k, eb, p.E, p.k_sb, p.k_sh, p.k_sl);
  a.v_vec = v3::vec_ok(p.v, eb, p.Ev, p.v_sb, p.v_sh, p.v_sl);
  a.o_vec = v3::vec_ok(p.out, eb, p.Ev, p.o_sb, p.o_sh, p.o_sl);
  a.prescale = p.mask_kind == MaskKind::kFloat || !(p.scale_log2 > 0.f);

  switch (mode) {
    case Mode::kF16: return v3::run_mode<Mode::kF16>(a, hd, rows, stream);
    case Mode::kBF16: return v3::run_mode<Mode::kBF16>(a, hd, rows, stream);
    case Mode::kTf32: return v3::run_mode<Mode::kTf32>(a, hd, rows, stream);
    case Mode::kTf32x3: return v3::run_mode<Mode::kTf32x3>(a, hd, rows, stream);
  }
}

}  // namespace flash_attn_ext::cuda
