// The CPU flash forward's front: work items, scratch layout and the choice of
// instruction set (cpu_isa.h).
#include "cpu_isa.h"
#include "flash_forward_vec.h"
#include "kernels.h"
#include "tile_sizes.h"

namespace flash_attn_ext::cpu {
namespace {

size_t align64(size_t n) { return (n + 63) & ~size_t(63); }

}  // namespace

VecScratch vec_scratch_layout(const FwdParams& p) {
  constexpr int64_t kWidest = 16;  // floats per AVX-512 vector; narrower ISAs divide it
  VecScratch s;
  s.ld_v = (p.Ev + kWidest - 1) / kWidest * kWidest;
  const bool narrow_inputs = p.dtype != ScalarKind::kFloat32;
  size_t at = 0;
  auto take = [&at](size_t floats) {
    const size_t offset = at;
    at += align64(floats * sizeof(float));
    return offset;
  };
  s.qt = take(p.E * kCpuBlockQ);
  s.kc = take(narrow_inputs ? kCpuBlockK * p.E : 0);
  s.vc = take(kCpuBlockK * s.ld_v);
  s.st = take(kCpuBlockK * kCpuBlockQ);
  s.bias = take(p.mask_kind != MaskKind::kNone ? kCpuBlockK * kCpuBlockQ : 0);
  s.mask_rows = take(p.mask_kind != MaskKind::kNone ? kCpuBlockQ * kCpuBlockK : 0);
  s.o = take(kCpuBlockQ * s.ld_v);
  s.stats = take(3 * kCpuBlockQ);
  s.total = at;
  return s;
}

int64_t flash_forward_num_work(const FwdParams& p) {
  return p.B * p.H * ((p.L + kCpuBlockQ - 1) / kCpuBlockQ);
}

size_t flash_forward_scratch_bytes(const FwdParams& p) {
  if (p.dtype == ScalarKind::kFloat64) return flash_forward_f64_scratch_bytes(p);
  return vec_scratch_layout(p).total;
}

void flash_forward(const FwdParams& p, int64_t work_begin, int64_t work_end, void* scratch) {
  if (p.dtype == ScalarKind::kFloat64) return flash_forward_f64(p, work_begin, work_end, scratch);
  const VecScratch s = vec_scratch_layout(p);
  switch (cpu_isa()) {
    case Isa::kAvx512: return flash_forward_avx512(p, s, work_begin, work_end, scratch);
    case Isa::kAvx2: return flash_forward_avx2(p, s, work_begin, work_end, scratch);
    case Isa::kPortable: return flash_forward_generic(p, s, work_begin, work_end, scratch);
  }
}

const char* flash_forward_isa() {
  switch (cpu_isa()) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    case Isa::kPortable: return "portable";
  }
  return "portable";
}

}  // namespace flash_attn_ext::cpu
