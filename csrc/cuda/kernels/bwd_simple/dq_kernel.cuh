// bwd_simple's query-major kernel: dQ of one query tile, without atomics (bitwise reproducible).
// One CTA per (batch, query head, tile of kBr rows); its Q, dO, LSE and D stay in shared memory while it
// walks the key tiles the tile's rows may see (causal: up to the last row's last key), staging K and V,
// recomputing P and dS (tiles.cuh) and adding dS K to float32 registers (warp w owns rows
// w * kRowsPerWarp.., lane owns columns lane, lane + 32, ...). Each dQ element is written once.
// It recomputes the S and dP products the dK/dV kernel also forms (5 -> 7 products in all): the
// price of having no atomics; key tiles of 16-32 keys would need S / kBc float32 reductions per dQ
// element (256 per element at S = 4096, E = 256), far more traffic than the recompute.
#pragma once

#include "tiles.cuh"

namespace flash_attn_ext::cuda::bwd_simple {

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) dq_kernel(const BwdParams bp, int64_t n_qblocks) {
  using Tl = Tiles<D>;
  constexpr int RPW = Tl::kRowsPerWarp, NC = Tl::kCols;
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  const FwdParams& p = bp.fwd;
  const Layout lay(p.E, p.Ev, Tl::kBr, Tl::kBc);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  const int64_t qb = blockIdx.x % n_qblocks, bh = blockIdx.x / n_qblocks;
  const int64_t b = bh / p.H, h = bh % p.H, hk = h / p.group;
  const int64_t i0 = qb * Tl::kBr;
  stage_queries<T>(bp, lay, smem, b, h, i0);  // visible after the first barrier of the loop
  const int64_t last_row = i0 + Tl::kBr < p.L ? i0 + Tl::kBr - 1 : p.L - 1;
  const int64_t key_end = p.causal_key_end(last_row);  // keys at or past it are hidden from every row

  float acc[RPW][NC];
#pragma unroll
  for (int rr = 0; rr < RPW; ++rr)
#pragma unroll
    for (int cc = 0; cc < NC; ++cc) acc[rr][cc] = 0.f;

  for (int64_t j0 = 0; j0 < key_end; j0 += Tl::kBc) {
    __syncthreads();  // the previous key tile's readers are done with K, V, P, dS
    stage_keys<T>(p, lay, smem, b, hk, j0);
    __syncthreads();
    // dscores is the dK/dV kernel's to write.
    const bool mine = probs_tile<D>(bp, lay, smem, b, h, i0, j0, nullptr);
    if (!__syncthreads_or(mine)) continue;
    dq_tile<D>(lay, smem, acc);
  }

  // dQ = scale dS K; rows past L and columns past E are not written. dq is contiguous (B, H, L, E).
  T* dq = static_cast<T*>(bp.dq) + (b * p.H + h) * p.L * p.E;
#pragma unroll
  for (int rr = 0; rr < RPW; ++rr) {
    const int64_t row = i0 + warp * RPW + rr;
    if (row >= p.L) continue;
#pragma unroll
    for (int cc = 0; cc < NC; ++cc) {
      const int col = 32 * cc + lane;
      if (col < p.E) dq[row * p.E + col] = from_float<T>(acc[rr][cc] * p.scale);
    }
  }
}

}  // namespace flash_attn_ext::cuda::bwd_simple
