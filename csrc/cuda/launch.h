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
// Hopper rung (sm_90a): 16-bit, E == Ev in {64, 128}, no mask or a bool mask, TMA-aligned rows.
// Returns false, having launched nothing, if the driver refuses a tensor map (or a bool mask
// comes without workspace); the caller then picks another rung. A bool mask needs a device
// workspace of v4_wgmma_workspace_bytes(p) bytes (256-byte aligned), used in stream order.
bool launch_v4_wgmma(const FwdParams& p, cudaStream_t stream, void* workspace = nullptr);
int64_t v4_wgmma_workspace_bytes(const FwdParams& p);
// Whether v4 takes these inputs on a device of compute capability `sm`; if not, why.
bool v4_wgmma_supports(const FwdParams& p, int sm, std::string* why);

// The backward's pre-pass (kernels/bwd_prep.cu), before any backward kernel: dout and out (B, H, L, Ev),
// unit-stride rows -> delta (B, H, L) float32 = rowsum(dout * out) - dlse (dlse float32 (B, H, L) or
// nullptr), and dq_accum (float32 (B, H, L, E) contiguous) zeroed when not null.
void launch_bwd_prep(const BwdParams& p, const float* dlse, float* delta, float* dq_accum, cudaStream_t stream);

// Tensor-core backward (kernels/bwd_mma): whether it takes these inputs on compute capability
// `sm`, and if not, why (the caller keeps the dense path then).
bool bwd_mma_supports(const BwdParams& p, int sm, std::string* why);
// dout, q, k, v (+ lse, delta) -> dk, dv, and dq: accumulated into dq_accum (float32 (B, H, L, E),
// zeroed by the caller, in launch_bwd_prep) with atomics, or, with dq_accum == nullptr, written to p.dq without
// atomics (bitwise reproducible).
void launch_bwd_mma(const BwdParams& p, float* dq_accum, cudaStream_t stream);
// Which backward FLASH_ATTN_EXT_BWD_VARIANT asks for: "wgmma" (the default: the Hopper backward,
// kernels/bwd_wgmma, where bwd_wgmma_supports takes the call; elsewhere, and under deterministic
// algorithms, launch_bwd_mma runs v5), "v5" (bwd_mma's dK/dV kernel dkdv_v5_kernel.cuh), "v4"
// (dkdv_kernel.cuh, the rung below) or "v5x2". Read at every call, so one process can A/B them;
// any other value means the default.
const char* bwd_mma_variant();

// Hopper backward (kernels/bwd_wgmma, sm_90a, the default where it applies):
// 16-bit, E == Ev in {64, 128}, no mask, TMA-legal q/k/v (and dout when check_dout) rows; if
// not, why. Non-deterministic dQ only (the caller keeps bwd_mma in deterministic mode).
bool bwd_wgmma_supports(const BwdParams& p, int sm, bool check_dout, std::string* why);
// q (B, H, L, E), k/v (B, Hkv, S, E), dout (B, H, L, E), lse/delta (B, H, L) -> dk, dv (B, Hkv, S, E)
// and dq_accum (float32 (B, H, L, E), zeroed by the caller) += dQ. Returns false, having launched
// nothing, if the driver refuses a tensor map; the caller then runs bwd_mma.
bool launch_bwd_wgmma(const BwdParams& p, float* dq_accum, cudaStream_t stream);

// CUDA-core backward (kernels/bwd_simple), O(L + S) memory, every sm: whether it takes these inputs
// on a device granting max_smem_optin bytes of shared memory per block, and if not, why.
bool bwd_simple_supports(const BwdParams& p, int max_smem_optin, std::string* why);
// dout, q, k, v (+ lse, delta) -> dq, dk, dv (and dscores when not null), all written without atomics
// (bitwise reproducible).
void launch_bwd_simple(const BwdParams& p, cudaStream_t stream);

}  // namespace flash_attn_ext::cuda
