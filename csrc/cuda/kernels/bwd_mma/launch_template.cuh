// The templated launcher each instantiation file compiles for its (dtype, head-dim bucket,
// causal) triple. Included only by csrc/cuda/instantiations/bwd_*.cu.
#pragma once

#include <cuda_runtime.h>

#include "dkdv_kernel.cuh"
#include "dkdv_v5_kernel.cuh"
#include "dq_kernel.cuh"
#include "run.h"

namespace flash_attn_ext::cuda::bwd {

// q (B, H, L, E), k (B, Hkv, S, E), v (B, Hkv, S, Ev), dout (B, H, L, Ev), lse/delta (B, H, L)
//   -> dk (B, Hkv, S, E), dv (B, Hkv, S, Ev) and either dq_accum (float32 (B, H, L, E), atomics)
//      or dq (B, H, L, E) directly (deterministic); dscores (B, H, L, S) when asked.
// Grids are 1-D (the launcher checked the block counts fit in 2^31 - 1): no 65535 limit on B*H.
template <bool BF16, int HD, bool CAUSAL>
void run_bwd(const BwdArgs& a, cudaStream_t stream) {
  using T = TileSizes<HD>;
  using TQ = DqTileSizes<HD>;
  const FwdParams& p = a.p.fwd;
  // Function attributes, not stream operations: legal while a CUDA graph is being captured.
  // v5x2 exists for HD <= 64 only (above, its 128-register cap cannot hold dK and dV): v5 there.
  constexpr bool kTwoCtas = HD <= 64;
  void (*dkdv)(BwdArgs) = bwd_dkdv_kernel<BF16, HD, CAUSAL>;
  if (a.variant == BwdVariant::kV5) dkdv = bwd_dkdv_v5_kernel<BF16, HD, CAUSAL, 32, 1>;
  if (a.variant == BwdVariant::kV5x2) {
    if constexpr (kTwoCtas) dkdv = bwd_dkdv_v5_kernel<BF16, HD, CAUSAL, 16, 2>;
    else dkdv = bwd_dkdv_v5_kernel<BF16, HD, CAUSAL, 32, 1>;
  }
  cudaFuncSetAttribute(dkdv, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(DkDvSmem<HD>::kBytes));
  // Two CTAs per SM need the largest shared-memory carveout; left to itself the driver may pick one
  // that holds a single CTA.
  if (a.variant == BwdVariant::kV5x2 && kTwoCtas)
    cudaFuncSetAttribute(dkdv, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared);
  const int64_t dkdv_blocks = a.n_kblocks * p.B * p.Hkv;
  dkdv<<<static_cast<unsigned>(dkdv_blocks), T::kThreads, DkDvSmem<HD>::kBytes, stream>>>(a);
  if (a.dq_accum != nullptr) return;
  auto* dq = bwd_dq_kernel<BF16, HD, CAUSAL>;
  cudaFuncSetAttribute(dq, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(DqSmem<HD>::kBytes));
  const int64_t dq_blocks = a.n_qblocks * p.B * p.H;
  dq<<<static_cast<unsigned>(dq_blocks), TQ::kThreads, DqSmem<HD>::kBytes, stream>>>(a);
}

}  // namespace flash_attn_ext::cuda::bwd
