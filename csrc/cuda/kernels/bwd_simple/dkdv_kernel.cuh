// bwd_simple's key-major kernel: dK and dV (and the float-mask gradient dS) of one key tile.
// One CTA per (batch, kv head, tile of kBc keys); its K and V rows stay in shared memory while it walks
// the query heads of its GQA group and their query tiles (causal: from the first row that sees the
// tile's first key), recomputing P and dS per tile (tiles.cuh). dK and dV are float32 registers:
// warp w owns keys w * kKeysPerWarp.., lane owns columns lane, lane + 32, ..., so the sum over the
// group's heads happens in registers and each dK / dV element is written once (no atomics).
#pragma once

#include "tiles.cuh"

namespace flash_attn_ext::cuda::bwd_simple {

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) dkdv_kernel(const BwdParams bp, int64_t n_kblocks) {
  using Tl = Tiles<D>;
  constexpr int KPW = Tl::kKeysPerWarp, NC = Tl::kCols;
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  const FwdParams& p = bp.fwd;
  const Layout lay(p.E, p.Ev, Tl::kBr, Tl::kBc);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  const int64_t kb = blockIdx.x % n_kblocks, bhk = blockIdx.x / n_kblocks;
  const int64_t b = bhk / p.Hkv, hk = bhk % p.Hkv;
  const int64_t j0 = kb * Tl::kBc;
  stage_keys<T>(p, lay, smem, b, hk, j0);  // visible after the first barrier of the loop

  // Causal: query i sees key j0 only when i >= j0 - offset; earlier tiles are all hidden.
  int64_t first_row = 0;
  if (p.causal != CausalMode::kNone) first_row = j0 - p.causal_offset > 0 ? j0 - p.causal_offset : 0;
  const int64_t i_begin = first_row / Tl::kBr * Tl::kBr;

  float dK[KPW][NC], dV[KPW][NC];
#pragma unroll
  for (int kk = 0; kk < KPW; ++kk)
#pragma unroll
    for (int cc = 0; cc < NC; ++cc) dK[kk][cc] = dV[kk][cc] = 0.f;
  float* dscores = static_cast<float*>(bp.dscores);
  const float* sQ = smem + lay.q_off();
  const float* sdO = smem + lay.do_off();
  const float* sP = smem + lay.p_off() + warp * KPW;
  const float* sdS = smem + lay.ds_off() + warp * KPW;

  for (int64_t g = 0; g < p.group; ++g) {
    const int64_t h = hk * p.group + g;
    for (int64_t i0 = i_begin; i0 < p.L; i0 += Tl::kBr) {
      __syncthreads();  // the previous tile's readers are done with Q, dO, P, dS
      stage_queries<T>(bp, lay, smem, b, h, i0);
      __syncthreads();
      const bool mine = probs_tile<D>(bp, lay, smem, b, h, i0, j0, dscores);
      if (!__syncthreads_or(mine)) continue;  // every pair hidden (or P underflowed): nothing to add
      for (int r = 0; r < Tl::kBr; ++r) {
        float pr[KPW], ds[KPW];
#pragma unroll
        for (int kk = 0; kk < KPW; ++kk) {
          pr[kk] = sP[r * lay.bc + kk];  // broadcasts: one key per kk for the whole warp
          ds[kk] = sdS[r * lay.bc + kk];
        }
#pragma unroll
        for (int cc = 0; cc < NC; ++cc) {
          // Warp-uniform guards; columns between E (Ev) and e32 (ev32) are zeros in shared memory.
          const float o = 32 * cc < lay.ev32 ? sdO[r * lay.dos + 32 * cc + lane] : 0.f;
          const float qv = 32 * cc < lay.e32 ? sQ[r * lay.qs + 32 * cc + lane] : 0.f;
#pragma unroll
          for (int kk = 0; kk < KPW; ++kk) {
            dV[kk][cc] = fmaf(pr[kk], o, dV[kk][cc]);
            dK[kk][cc] = fmaf(ds[kk], qv, dK[kk][cc]);
          }
        }
      }
    }
  }

  // dK = scale dS^T Q; rows past S and columns past E / Ev are not written. dk, dv are contiguous.
  T* dk = static_cast<T*>(bp.dk) + (b * p.Hkv + hk) * p.S * p.E;
  T* dv = static_cast<T*>(bp.dv) + (b * p.Hkv + hk) * p.S * p.Ev;
#pragma unroll
  for (int kk = 0; kk < KPW; ++kk) {
    const int64_t key = j0 + warp * KPW + kk;
    if (key >= p.S) continue;
#pragma unroll
    for (int cc = 0; cc < NC; ++cc) {
      const int col = 32 * cc + lane;
      if (col < p.E) dk[key * p.E + col] = from_float<T>(dK[kk][cc] * p.scale);
      if (col < p.Ev) dv[key * p.Ev + col] = from_float<T>(dV[kk][cc]);
    }
  }
}

}  // namespace flash_attn_ext::cuda::bwd_simple
