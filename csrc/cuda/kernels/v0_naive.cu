// v0 naive: the first rung and the GPU oracle for the others.
//
// One thread owns one query row: it keeps the row (in its storage dtype) and a float
// accumulator in registers, walks every key it may see straight from global memory,
// and updates the running max m, running sum l and output o one key at a time
// (online softmax). Nothing is shared between threads; all threads of a warp read
// the same K/V row at the same time, so each load is one broadcast from L1.
// Masked or causal-hidden keys are skipped before their K or V row is touched, so
// NaN/Inf there can never reach the output.
//
// Cost model: per key and row, E + Ev FMAs against (E + Ev) / 8 16-byte loads and a
// few scalar ops; the loads go through the L1/LSU path and every row of a head
// re-reads all of K and V from L2. Measured (H200, bf16, B*N = 16k, N = 4096): 4.1
// TFLOP/s at E=64, 2.8 at E=128, 6% of the 67 TFLOP/s float32 FMA peak; benchmarks/NOTES.md.
#include "../launch.h"
#include "common.cuh"
#include "query_row.cuh"

namespace flash_attn_ext::cuda {
namespace {

constexpr int kThreads = 128;

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) v0_kernel(const FwdParams p) {
  const BlockWork w = block_work(p, kThreads);
  const int64_t i = w.i0 + threadIdx.x;
  if (i >= p.L) return;
  const int E = static_cast<int>(p.E), Ev = static_cast<int>(p.Ev);

  const T* q = static_cast<const T*>(p.q) + w.b * p.q_sb + w.h * p.q_sh + i * p.q_sl;
  const T* k = static_cast<const T*>(p.k) + w.b * p.k_sb + w.hk * p.k_sh;
  const T* v = static_cast<const T*>(p.v) + w.b * p.v_sb + w.hk * p.v_sh;
  const bool vec_k = rows_aligned16(p.k, p.k_sb, p.k_sh, p.k_sl, sizeof(T));
  const bool vec_v = rows_aligned16(p.v, p.v_sb, p.v_sh, p.v_sl, sizeof(T));

  QueryRow<T, D> qr;
  qr.load(q, E, rows_aligned16(p.q, p.q_sb, p.q_sh, p.q_sl, sizeof(T)));

  float o[D];
#pragma unroll
  for (int e = 0; e < D; ++e) o[e] = 0.f;
  float m = -INFINITY, l = 0.f;

  const bool has_mask = p.mask_kind != MaskKind::kNone;
  const int64_t mask_row = w.b * p.m_sb + w.h * p.m_sh + i * p.m_sl;
  const int64_t key_end = p.causal_key_end(i);

  for (int64_t j = 0; j < key_end; ++j) {
    float bias = 0.f;
    if (has_mask) {
      bias = mask_bias_log2(p, mask_row + j * p.m_ss);
      if (bias == -INFINITY) continue;
    }
    const T* krow = k + j * p.k_sl;
    // Two partial sums halve the dependent FMA chain.
    float d0 = 0.f, d1 = 0.f;
#pragma unroll
    for (int c = 0; c < D / 8; ++c) {
      if (8 * c < E) {
        float kx[8];
        load8(krow, 8 * c, E, vec_k, kx);
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          const float2 qq = qr.pair(4 * c + u);
          d0 = fmaf(qq.x, kx[2 * u], d0);
          d1 = fmaf(qq.y, kx[2 * u + 1], d1);
        }
      }
    }
    const float s = (d0 + d1) * p.scale_log2 + bias;
    if (s == -INFINITY) continue;  // exp2(s - m) would be (-inf) - (-inf) for a row that has seen nothing
    if (s > m) {
      const float alpha = exp2f(m - s);  // 0 when m is still -inf
      l *= alpha;
#pragma unroll
      for (int c = 0; c < D / 8; ++c)
        if (8 * c < Ev) {
#pragma unroll
          for (int u = 0; u < 8; ++u) o[8 * c + u] *= alpha;
        }
      m = s;
    }
    const float pr = exp2f(s - m);
    l += pr;
    const T* vrow = v + j * p.v_sl;
#pragma unroll
    for (int c = 0; c < D / 8; ++c) {
      if (8 * c < Ev) {
        float vx[8];
        load8(vrow, 8 * c, Ev, vec_v, vx);
#pragma unroll
        for (int u = 0; u < 8; ++u) o[8 * c + u] = fmaf(pr, vx[u], o[8 * c + u]);
      }
    }
  }

  T* out = static_cast<T*>(p.out) + w.b * p.o_sb + w.h * p.o_sh + i * p.o_sl;
  const bool vec_o = rows_aligned16(p.out, p.o_sb, p.o_sh, p.o_sl, sizeof(T));
  const float inv = l > 0.f ? 1.f / l : 0.f;  // rows that saw no key: out 0
#pragma unroll
  for (int c = 0; c < D / 8; ++c) {
    if (8 * c < Ev) {
      float y[8];
#pragma unroll
      for (int u = 0; u < 8; ++u) y[u] = o[8 * c + u] * inv;
      store8(out, 8 * c, Ev, vec_o, y);
    }
  }
  p.lse[(w.b * p.H + w.h) * p.L + i] = l > 0.f ? (m + __log2f(l)) * kLn2 : -INFINITY;
}

template <typename T>
void launch_dtype(const FwdParams& p, cudaStream_t stream) {
  const dim3 grid(grid_blocks(p, kThreads)), block(kThreads);
  switch (head_dim_bucket(p.E > p.Ev ? p.E : p.Ev)) {
    case 32: v0_kernel<T, 32><<<grid, block, 0, stream>>>(p); break;
    case 64: v0_kernel<T, 64><<<grid, block, 0, stream>>>(p); break;
    case 128: v0_kernel<T, 128><<<grid, block, 0, stream>>>(p); break;
    default: v0_kernel<T, 256><<<grid, block, 0, stream>>>(p); break;
  }
}

}  // namespace

void launch_v0_naive(const FwdParams& p, cudaStream_t stream) {
  switch (p.dtype) {
    case ScalarKind::kFloat16: return launch_dtype<__half>(p, stream);
    case ScalarKind::kBFloat16: return launch_dtype<__nv_bfloat16>(p, stream);
    case ScalarKind::kFloat32: return launch_dtype<float>(p, stream);
    default: return;  // the host side admits only these three dtypes on CUDA
  }
}

}  // namespace flash_attn_ext::cuda
