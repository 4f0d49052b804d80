// The CPU flash forward's front: work items, scratch layout and the choice of
// instruction set, made once from the CPU's features.
//
// FLASH_ATTN_EXT_CPU_ISA=avx2|portable forces a narrower path (for tests and
// benchmarks on a machine that has more); a request the CPU cannot run is ignored.
#include <cstdlib>
#include <cstring>

#include "flash_forward_vec.h"
#include "kernels.h"
#include "tile_sizes.h"

namespace flash_attn_ext::cpu {
namespace {

enum class Isa { kAvx512, kAvx2, kPortable };

Isa detect_isa() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  Isa best = avx512 ? Isa::kAvx512 : avx2 ? Isa::kAvx2 : Isa::kPortable;
  const char* forced = std::getenv("FLASH_ATTN_EXT_CPU_ISA");
  if (forced != nullptr) {
    if (std::strcmp(forced, "portable") == 0) best = Isa::kPortable;
    if (std::strcmp(forced, "avx2") == 0 && best == Isa::kAvx512) best = Isa::kAvx2;
  }
  return best;
#else
  return Isa::kPortable;
#endif
}

Isa isa() {
  static const Isa chosen = detect_isa();
  return chosen;
}

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
  switch (isa()) {
    case Isa::kAvx512: return flash_forward_avx512(p, s, work_begin, work_end, scratch);
    case Isa::kAvx2: return flash_forward_avx2(p, s, work_begin, work_end, scratch);
    case Isa::kPortable: return flash_forward_generic(p, s, work_begin, work_end, scratch);
  }
}

const char* flash_forward_isa() {
  switch (isa()) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    case Isa::kPortable: return "portable";
  }
  return "portable";
}

}  // namespace flash_attn_ext::cpu
