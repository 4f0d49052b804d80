// Run-time choice of the vector ISA (see cpu_isa.h).
#include "cpu_isa.h"

#include <cstdlib>
#include <cstring>

namespace flash_attn_ext::cpu {
namespace {

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

}  // namespace

Isa cpu_isa() {
  static const Isa chosen = detect_isa();
  return chosen;
}

}  // namespace flash_attn_ext::cpu
