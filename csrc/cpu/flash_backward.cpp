// The CPU flash backward's front: the key chunks, scratch layout, ISA choice, and the
// final sum of the dQ partials. See flash_backward_impl.h for the kernel itself.
#include <algorithm>

#include "../common/numeric.h"
#include "backward_kernels.h"
#include "cpu_isa.h"
#include "flash_backward_vec.h"
#include "tile_sizes.h"

namespace flash_attn_ext::cpu {
namespace {

constexpr int64_t kWidest = 16;  // floats per AVX-512 vector; narrower ISAs divide it
// Chunks are added until (b, kv head, chunk) gives this many work items: enough for the
// dynamic scheduler to balance a few threads, while each extra chunk costs one more float
// copy of dQ (written, then summed).
constexpr int64_t kTargetItems = 32;
// ... and never more chunks than fit this many bytes of dQ partials (then fewer items).
constexpr int64_t kDqPartBudget = int64_t(256) << 20;

size_t align64(size_t n) { return (n + 63) & ~size_t(63); }
int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

int64_t dq_floats_per_chunk(const FwdParams& p) { return p.B * p.H * p.L * round_up(p.E, kWidest); }

int64_t dq_chunks(const FwdParams& p) {
  const int64_t k_blocks = (p.S + kCpuBlockK - 1) / kCpuBlockK;
  const int64_t want = (kTargetItems + p.B * p.Hkv - 1) / (p.B * p.Hkv);
  const int64_t fit = kDqPartBudget / std::max<int64_t>(1, dq_floats_per_chunk(p) * int64_t(sizeof(float)));
  return std::max<int64_t>(1, std::min({k_blocks, want, fit}));
}

}  // namespace

BwdScratch bwd_scratch_layout(const FwdParams& p) {
  BwdScratch s;
  s.ld_e = round_up(p.E, kWidest);
  s.ld_v = round_up(p.Ev, kWidest);
  const bool masked = p.mask_kind != MaskKind::kNone;
  size_t at = 0;
  auto take = [&at](int64_t floats) {
    const size_t offset = at;
    at += align64(static_cast<size_t>(floats) * sizeof(float));
    return offset;
  };
  s.qr = take(kCpuBlockQ * s.ld_e);
  s.qt = take(s.ld_e * kCpuBlockQ);
  s.dor = take(kCpuBlockQ * s.ld_v);
  s.dot = take(s.ld_v * kCpuBlockQ);
  s.kc = take(kCpuBlockK * s.ld_e);
  s.vc = take(kCpuBlockK * s.ld_v);
  s.st = take(kCpuBlockK * kCpuBlockQ);
  s.dp = take(kCpuBlockK * kCpuBlockQ);
  s.bias = take(masked ? kCpuBlockK * kCpuBlockQ : 0);
  s.mask_rows = take(masked ? kCpuBlockQ * kCpuBlockK : 0);
  s.dk = take(kCpuBlockK * s.ld_e);
  s.dv = take(kCpuBlockK * s.ld_v);
  s.rowstats = take(2 * kCpuBlockQ);
  s.total = at;
  return s;
}

int64_t backward_vec_num_work(const BwdParams& p) { return p.fwd.B * p.fwd.Hkv * dq_chunks(p.fwd); }

size_t backward_vec_scratch_bytes(const BwdParams& p) { return bwd_scratch_layout(p.fwd).total; }

int64_t backward_vec_dq_part_floats(const BwdParams& p) { return dq_chunks(p.fwd) * dq_floats_per_chunk(p.fwd); }

void backward_vec(const BwdParams& p, int64_t w, void* scratch, float* dq_part) {
  const BwdScratch s = bwd_scratch_layout(p.fwd);
  const int64_t chunks = dq_chunks(p.fwd);
  switch (cpu_isa()) {
    case Isa::kAvx512: return flash_backward_avx512(p, s, chunks, w, scratch, dq_part);
    case Isa::kAvx2: return flash_backward_avx2(p, s, chunks, w, scratch, dq_part);
    case Isa::kPortable: return flash_backward_generic(p, s, chunks, w, scratch, dq_part);
  }
}

namespace {

template <typename T>
void finish_rows(const FwdParams& p, const float* dq_part, int64_t chunks, int64_t row_begin, int64_t row_end, T* dq) {
  const int64_t ld = round_up(p.E, kWidest), stride = dq_floats_per_chunk(p);
  for (int64_t x = row_begin; x < row_end; ++x) {
    for (int64_t e = 0; e < p.E; ++e) {
      float sum = 0.0f;
      for (int64_t c = 0; c < chunks; ++c) sum += dq_part[c * stride + x * ld + e];
      store_float(dq + x * p.E + e, sum * p.scale);
    }
  }
}

}  // namespace

void backward_vec_finish_dq(const BwdParams& p, const float* dq_part, int64_t row_begin, int64_t row_end) {
  const int64_t chunks = dq_chunks(p.fwd);
  switch (p.fwd.dtype) {
    case ScalarKind::kFloat32:
      return finish_rows(p.fwd, dq_part, chunks, row_begin, row_end, static_cast<float*>(p.dq));
    case ScalarKind::kFloat16:
      return finish_rows(p.fwd, dq_part, chunks, row_begin, row_end, static_cast<Half*>(p.dq));
    case ScalarKind::kBFloat16:
      return finish_rows(p.fwd, dq_part, chunks, row_begin, row_end, static_cast<BFloat16*>(p.dq));
    default: return;
  }
}

}  // namespace flash_attn_ext::cpu
