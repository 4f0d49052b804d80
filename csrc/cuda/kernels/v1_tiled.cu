// v1 tiled: what changed from v0, and what it bought.
//
// Still one thread per query row with the row and its accumulator in registers, but a
// block of kRows = 128 rows now stages K and V tiles of kKeys = 32 keys in shared
// memory (converted to float once, coalesced 16-byte loads), and every row of the
// block reuses them: global/L2 traffic for K and V drops by a factor of 128, and the
// inner loops read shared memory as broadcast 16-byte loads.
// Keys are scored four at a time: each query element is unpacked once for four FMAs,
// and the running max is updated once per group of four instead of once per key.
// The mask is staged as a (rows x keys) tile of log2-unit biases with a padded row
// stride, so each thread reads its own row without bank conflicts.
// A group with any zero probability (a hidden key, or an underflow) takes a per-key
// path that skips those keys, so NaN/Inf in V at hidden keys is never multiplied.
//
// Bought (H200, bf16, B*N = 16k, N = 4096, TFLOP/s): v0 4.1 -> v1 20.9 at E=64, but only
// 2.8 -> 10.6 at E=128, where the row and its accumulator take all 255 registers (2
// blocks per SM, some spill) and D=256 spills the accumulator. History in benchmarks/NOTES.md.
#include "../launch.h"
#include "common.cuh"
#include "query_row.cuh"
#include "tile_load.cuh"

namespace flash_attn_ext::cuda {
namespace {

constexpr int kRows = 128;  // query rows per block, one per thread
constexpr int kKeys = 32;   // keys per shared-memory tile
constexpr int kGroup = 4;   // keys scored together
constexpr int kMaskStride = kKeys + 1;

inline int round8(int64_t n) { return static_cast<int>((n + 7) / 8 * 8); }

size_t smem_bytes(const FwdParams& p) {
  size_t floats = static_cast<size_t>(kKeys) * (round8(p.E) + round8(p.Ev));
  if (p.mask_kind != MaskKind::kNone) floats += static_cast<size_t>(kRows) * kMaskStride;
  return floats * sizeof(float);
}

template <int D>
__device__ __forceinline__ void scale_acc(float (&o)[D], float alpha, int Ev) {
#pragma unroll
  for (int c = 0; c < D / 8; ++c)
    if (8 * c < Ev) {
#pragma unroll
      for (int u = 0; u < 8; ++u) o[8 * c + u] *= alpha;
    }
}

template <typename T, int D>
__global__ void __launch_bounds__(kRows) v1_kernel(const FwdParams p) {
  extern __shared__ float4 smem4[];
  const int E = static_cast<int>(p.E), Ev = static_cast<int>(p.Ev);
  const int E8 = (E + 7) & ~7, Ev8 = (Ev + 7) & ~7;
  float* Ks = reinterpret_cast<float*>(smem4);  // [kKeys][E8]
  float* Vs = Ks + kKeys * E8;                  // [kKeys][Ev8]
  float* Ms = Vs + kKeys * Ev8;                 // [kRows][kMaskStride], only with a mask

  const BlockWork w = block_work(p, kRows);
  const int t = threadIdx.x;
  const int64_t i = w.i0 + t;
  const bool row_valid = i < p.L;
  const int64_t rows_end = w.i0 + kRows < p.L ? w.i0 + kRows : p.L;
  const int64_t block_key_end = p.causal_key_end(rows_end - 1);  // the block's last row sees the most keys
  const int64_t row_end = row_valid ? p.causal_key_end(i) : 0;

  const T* k = static_cast<const T*>(p.k) + w.b * p.k_sb + w.hk * p.k_sh;
  const T* v = static_cast<const T*>(p.v) + w.b * p.v_sb + w.hk * p.v_sh;
  const bool vec_k = rows_aligned16(p.k, p.k_sb, p.k_sh, p.k_sl, sizeof(T));
  const bool vec_v = rows_aligned16(p.v, p.v_sb, p.v_sh, p.v_sl, sizeof(T));
  const bool has_mask = p.mask_kind != MaskKind::kNone;
  const int64_t mask_base = w.b * p.m_sb + w.h * p.m_sh;

  QueryRow<T, D> qr;
  qr.load(static_cast<const T*>(p.q) + w.b * p.q_sb + w.h * p.q_sh + (row_valid ? i : 0) * p.q_sl,
          row_valid ? E : 0, rows_aligned16(p.q, p.q_sb, p.q_sh, p.q_sl, sizeof(T)));

  float o[D];
#pragma unroll
  for (int e = 0; e < D; ++e) o[e] = 0.f;
  float m = -INFINITY, l = 0.f;

  for (int64_t j0 = 0; j0 < block_key_end; j0 += kKeys) {
    __syncthreads();  // every thread is done with the previous tile
    stage_rows(Ks, E8, k, p.k_sl, j0, block_key_end, kKeys, E, E8, vec_k, 1.f);
    stage_rows(Vs, Ev8, v, p.v_sl, j0, block_key_end, kKeys, Ev, Ev8, vec_v, 1.f);
    if (has_mask) stage_mask(Ms, kMaskStride, p, mask_base, w.i0, p.L, kRows, j0, block_key_end, kKeys);
    __syncthreads();

    const int64_t tile_end = row_end - j0;  // keys c < tile_end of this tile are causally visible to this row
    const int tile_keys = block_key_end - j0 < kKeys ? static_cast<int>(block_key_end - j0) : kKeys;
    for (int c0 = 0; c0 < tile_keys; c0 += kGroup) {
      float s[kGroup] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int ch = 0; ch < D / 8; ++ch) {
        if (8 * ch < E) {
          float2 qq[4];
#pragma unroll
          for (int u = 0; u < 4; ++u) qq[u] = qr.pair(4 * ch + u);
#pragma unroll
          for (int g = 0; g < kGroup; ++g) {
            const float4 a = *reinterpret_cast<const float4*>(Ks + (c0 + g) * E8 + 8 * ch);
            const float4 b = *reinterpret_cast<const float4*>(Ks + (c0 + g) * E8 + 8 * ch + 4);
            s[g] = fmaf(qq[0].x, a.x, s[g]);
            s[g] = fmaf(qq[0].y, a.y, s[g]);
            s[g] = fmaf(qq[1].x, a.z, s[g]);
            s[g] = fmaf(qq[1].y, a.w, s[g]);
            s[g] = fmaf(qq[2].x, b.x, s[g]);
            s[g] = fmaf(qq[2].y, b.y, s[g]);
            s[g] = fmaf(qq[3].x, b.z, s[g]);
            s[g] = fmaf(qq[3].y, b.w, s[g]);
          }
        }
      }
      // Hidden keys become -inf by selection, never by arithmetic, so a NaN score
      // computed from a hidden K row is dropped here.
      float gmax = -INFINITY;
#pragma unroll
      for (int g = 0; g < kGroup; ++g) {
        const float bias = has_mask ? Ms[t * kMaskStride + c0 + g] : 0.f;
        const bool visible = c0 + g < tile_end && bias != -INFINITY;
        s[g] = visible ? fmaf(s[g], p.scale_log2, bias) : -INFINITY;
        gmax = fmaxf(gmax, s[g]);
      }
      if (gmax == -INFINITY) continue;  // nothing visible: skip, and never form (-inf) - (-inf)
      if (gmax > m) {
        const float alpha = exp2f(m - gmax);
        l *= alpha;
        scale_acc(o, alpha, Ev);
        m = gmax;
      }
      float pr[kGroup];
      bool all_live = true;
#pragma unroll
      for (int g = 0; g < kGroup; ++g) {
        pr[g] = exp2f(s[g] - m);
        l += pr[g];
        all_live = all_live && pr[g] != 0.f;
      }
      if (all_live) {
#pragma unroll
        for (int ch = 0; ch < D / 4; ++ch) {
          if (4 * ch < Ev) {
#pragma unroll
            for (int g = 0; g < kGroup; ++g) {
              const float4 x = *reinterpret_cast<const float4*>(Vs + (c0 + g) * Ev8 + 4 * ch);
              o[4 * ch + 0] = fmaf(pr[g], x.x, o[4 * ch + 0]);
              o[4 * ch + 1] = fmaf(pr[g], x.y, o[4 * ch + 1]);
              o[4 * ch + 2] = fmaf(pr[g], x.z, o[4 * ch + 2]);
              o[4 * ch + 3] = fmaf(pr[g], x.w, o[4 * ch + 3]);
            }
          }
        }
      } else {
        for (int g = 0; g < kGroup; ++g) {
          if (pr[g] == 0.f) continue;
#pragma unroll
          for (int ch = 0; ch < D / 4; ++ch) {
            if (4 * ch < Ev) {
              const float4 x = *reinterpret_cast<const float4*>(Vs + (c0 + g) * Ev8 + 4 * ch);
              o[4 * ch + 0] = fmaf(pr[g], x.x, o[4 * ch + 0]);
              o[4 * ch + 1] = fmaf(pr[g], x.y, o[4 * ch + 1]);
              o[4 * ch + 2] = fmaf(pr[g], x.z, o[4 * ch + 2]);
              o[4 * ch + 3] = fmaf(pr[g], x.w, o[4 * ch + 3]);
            }
          }
        }
      }
    }
  }

  if (!row_valid) return;
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

template <typename T, int D>
void launch_bucket(const FwdParams& p, cudaStream_t stream) {
  const size_t smem = smem_bytes(p);
  allow_dynamic_smem(v1_kernel<T, D>, smem);
  v1_kernel<T, D><<<grid_blocks(p, kRows), kRows, smem, stream>>>(p);
}

template <typename T>
void launch_dtype(const FwdParams& p, cudaStream_t stream) {
  switch (head_dim_bucket(p.E > p.Ev ? p.E : p.Ev)) {
    case 32: return launch_bucket<T, 32>(p, stream);
    case 64: return launch_bucket<T, 64>(p, stream);
    case 128: return launch_bucket<T, 128>(p, stream);
    default: return launch_bucket<T, 256>(p, stream);
  }
}

}  // namespace

void launch_v1_tiled(const FwdParams& p, cudaStream_t stream) {
  switch (p.dtype) {
    case ScalarKind::kFloat16: return launch_dtype<__half>(p, stream);
    case ScalarKind::kBFloat16: return launch_dtype<__nv_bfloat16>(p, stream);
    case ScalarKind::kFloat32: return launch_dtype<float>(p, stream);
    default: return;  // the host side admits only these three dtypes on CUDA
  }
}

}  // namespace flash_attn_ext::cuda
