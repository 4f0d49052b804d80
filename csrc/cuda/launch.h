// Launchers of the CUDA ladder, one per rung. Each takes the params of one call and
// the stream to run on; the host side (api.cu) has already validated the inputs.
// No torch headers: kernel files include this and compile with plain nvcc.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "../common/params.h"

namespace flash_attn_ext::cuda {

// q (B, H, L, E), k/v (B, Hkv, S, E/Ev) -> out (B, H, L, Ev), lse (B, H, L).
void launch_v0_naive(const FwdParams& p, cudaStream_t stream);
void launch_v1_tiled(const FwdParams& p, cudaStream_t stream);
void launch_v2_warp(const FwdParams& p, cudaStream_t stream);
void launch_v3_mma(const FwdParams& p, cudaStream_t stream);
// Hopper rung (sm_90a): 16-bit, E == Ev in {64, 128}, no mask, TMA-aligned rows. Returns false,
// having launched nothing, if the driver refuses a tensor map; the caller then picks another rung.
bool launch_v4_wgmma(const FwdParams& p, cudaStream_t stream);
// Whether v4 takes these inputs on a device of compute capability `sm`; if not, why.
bool v4_wgmma_supports(const FwdParams& p, int sm, std::string* why);

}  // namespace flash_attn_ext::cuda
