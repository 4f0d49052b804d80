// launch_v3_mma: picks the operand mode and head-dim bucket, derives the per-call flags
// (alignment, prescale) and calls the matching explicit instantiation.
#include <cstdint>

#include "../../launch.h"
#include "run.h"

namespace flash_attn_ext::cuda {
namespace v3 {

namespace {

template <Mode M>
int block_m_of(int hd) {
  switch (hd) {
    case 32: return TileSizes<M, 32>::kBlockM;
    case 64: return TileSizes<M, 64>::kBlockM;
    case 96: return TileSizes<M, 96>::kBlockM;
    case 128: return TileSizes<M, 128>::kBlockM;
    case 160: return TileSizes<M, 160>::kBlockM;
    case 192: return TileSizes<M, 192>::kBlockM;
    default: return TileSizes<M, 256>::kBlockM;
  }
}

}  // namespace

int block_m(Mode mode, int hd) {
  switch (mode) {
    case Mode::kF16: return block_m_of<Mode::kF16>(hd);
    case Mode::kBF16: return block_m_of<Mode::kBF16>(hd);
    case Mode::kTf32: return block_m_of<Mode::kTf32>(hd);
    default: return block_m_of<Mode::kTf32x3>(hd);
  }
}

namespace {

int bucket(int64_t d) {
  for (int b : kBuckets)
    if (d <= b) return b;
  return 256;
}

// 16-byte copies need a 16-byte aligned base and every stride a whole number of 16 bytes.
bool vec_ok(const void* ptr, int64_t elem_bytes, int64_t cols, int64_t sb, int64_t sh, int64_t sl) {
  const int64_t per = 16 / elem_bytes;
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0 && cols % per == 0 && sb % per == 0 && sh % per == 0 &&
         sl % per == 0;
}

template <Mode M, bool CAUSAL>
void run_bucket(const V3Args& a, int hd, cudaStream_t s) {
  switch (hd) {
    case 32: return run_v3<M, 32, CAUSAL>(a, s);
    case 64: return run_v3<M, 64, CAUSAL>(a, s);
    case 96: return run_v3<M, 96, CAUSAL>(a, s);
    case 128: return run_v3<M, 128, CAUSAL>(a, s);
    case 160: return run_v3<M, 160, CAUSAL>(a, s);
    case 192: return run_v3<M, 192, CAUSAL>(a, s);
    default: return run_v3<M, 256, CAUSAL>(a, s);
  }
}

template <Mode M>
void run_mode(const V3Args& a, int hd, cudaStream_t s) {
  if (a.p.causal == CausalMode::kNone) run_bucket<M, false>(a, hd, s);
  else run_bucket<M, true>(a, hd, s);
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
  const int64_t eb = p.dtype == ScalarKind::kFloat32 ? 4 : 2;
  v3::V3Args a;
  a.p = p;
  a.n_qblocks = (p.L + v3::block_m(mode, hd) - 1) / v3::block_m(mode, hd);
  a.q_vec = v3::vec_ok(p.q, eb, p.E, p.q_sb, p.q_sh, p.q_sl);
  a.k_vec = v3::vec_ok(p.k, eb, p.E, p.k_sb, p.k_sh, p.k_sl);
  a.v_vec = v3::vec_ok(p.v, eb, p.Ev, p.v_sb, p.v_sh, p.v_sl);
  a.o_vec = v3::vec_ok(p.out, eb, p.Ev, p.o_sb, p.o_sh, p.o_sl);
  a.prescale = p.mask_kind == MaskKind::kFloat || !(p.scale_log2 > 0.f);

  switch (mode) {
    case Mode::kF16: return v3::run_mode<Mode::kF16>(a, hd, stream);
    case Mode::kBF16: return v3::run_mode<Mode::kBF16>(a, hd, stream);
    case Mode::kTf32: return v3::run_mode<Mode::kTf32>(a, hd, stream);
    case Mode::kTf32x3: return v3::run_mode<Mode::kTf32x3>(a, hd, stream);
  }
}

}  // namespace flash_attn_ext::cuda
