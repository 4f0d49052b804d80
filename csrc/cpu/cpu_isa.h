// Which vector instruction set the CPU kernels run with, chosen once from the CPU's features.
// Shared by the forward and backward dispatchers so both always take the same path.
//
// FLASH_ATTN_EXT_CPU_ISA=avx2|portable forces a narrower path (for tests and
// benchmarks on a machine that has more); a request the CPU cannot run is ignored.
#pragma once

namespace flash_attn_ext::cpu {

enum class Isa { kAvx512, kAvx2, kPortable };

Isa cpu_isa();

}  // namespace flash_attn_ext::cpu
