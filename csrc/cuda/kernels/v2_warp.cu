// v2 warp-cooperative: what changed from v1, and what it bought.
//
// v1 gives each thread a whole query row, so a row of 128 elements plus its float
// accumulator fills the register file (255 registers, 2 blocks per SM) and rows of
// 256 spill to local memory. v2 splits each row across a warp instead:
// - a block owns kRows = 32 query rows; each of its 4 warps owns 8 of them;
// - K/V tiles hold kKeys = 32 keys and lane j scores key j against the warp's 8 rows
//   (q read from shared memory as broadcast float4, K row j from a padded tile);
// - the row max of a tile is a 5-step __shfl_xor_sync butterfly, the row sum is kept
//   per lane (every lane rescales by the same factor) and reduced once at the end;
// - P goes through a per-warp shared buffer and comes back as broadcast float4, and
//   lane c accumulates output columns c, c + 32, ...: 8 x Ev/32 floats per lane; four
//   V rows are read once per lane and reused by all 8 rows.
// Registers: 80 at D=64, 116 at D=128, 168 at D=256, no spills (v1: 168, 255 + spills,
// 255 + 3 KB of spills), so 4-6 blocks share an SM instead of 2-3.
// Keys of a tile that no row of the block may see have their V rows zeroed (masks)
// or are never loaded (causal, tails), and a row skips the V rows of keys it gives zero
// weight, so NaN/Inf in a hidden V row never meets a 0 (0 * NaN is NaN).
//
// Bought (H200, bf16, B*N = 16k, N = 4096, TFLOP/s): v1 20.9 -> v2 21.0 at E=64 and
// v1 10.6 -> v2 22.1 at E=128; float32 likewise. History in benchmarks/NOTES.md.
#include "../launch.h"
#include "common.cuh"
#include "tile_load.cuh"

namespace flash_attn_ext::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kRowsPerWarp = 8;
constexpr int kRows = kWarps * kRowsPerWarp;  // query rows per block
constexpr int kKeys = 32;                     // keys per tile: one per lane
constexpr int kThreads = kWarps * 32;
constexpr int kMaskStride = kKeys + 1;
constexpr unsigned kFullMask = 0xffffffffu;

// Shared-memory row strides (floats) for head dims E and Ev.
struct Layout {
  int e8, q_stride, k_stride, v_stride;
  __host__ __device__ Layout(int64_t E, int64_t Ev)
      : e8(static_cast<int>((E + 7) / 8 * 8)),
        q_stride(e8),
        // An odd number of float4s per K row: lane j reading row j hits distinct banks.
        k_stride(e8 + 4),
        v_stride(static_cast<int>((Ev + 31) / 32 * 32)) {}
  __host__ __device__ int q_floats() const { return kRows * q_stride; }
  __host__ __device__ int k_floats() const { return kKeys * k_stride; }
  __host__ __device__ int v_floats() const { return kKeys * v_stride; }
  __host__ __device__ int p_floats() const { return kWarps * kRowsPerWarp * kKeys; }
};

size_t smem_bytes(const FwdParams& p) {
  const Layout lay(p.E, p.Ev);
  size_t floats = static_cast<size_t>(lay.q_floats()) + lay.k_floats() + lay.v_floats() + lay.p_floats();
  if (p.mask_kind != MaskKind::kNone) floats += static_cast<size_t>(kRows) * kMaskStride;
  return floats * sizeof(float);
}

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) x = fmaxf(x, __shfl_xor_sync(kFullMask, x, d));
  return x;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) x += __shfl_xor_sync(kFullMask, x, d);
  return x;
}

// O += P V over the tile's first tile_keys keys; the lane owns columns lane, lane + 32, ...
// kSkipZeros: a key given zero weight (hidden from the row, or underflowed) leaves its V row out,
// since 0 * NaN is NaN. Only tiles where some row of the warp has such a key pay for the test.
template <bool kSkipZeros, int kCols>
__device__ __forceinline__ void accumulate_pv(float (&o)[kRowsPerWarp][kCols], const float* Pw, const float* Vs,
                                              int v_stride, int tile_keys, int Ev, int lane) {
  for (int c0 = 0; c0 < tile_keys; c0 += 4) {
    // Four V rows, this lane's columns, reused by all 8 rows; P comes back one row at a time.
    float vv[4][kCols];
#pragma unroll
    for (int c = 0; c < kCols; ++c) {
#pragma unroll
      for (int u = 0; u < 4; ++u) vv[u][c] = 32 * c < Ev ? Vs[(c0 + u) * v_stride + 32 * c + lane] : 0.f;
    }
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const float4 pp = *reinterpret_cast<const float4*>(Pw + r * kKeys + c0);
      const float pu[4] = {pp.x, pp.y, pp.z, pp.w};
#pragma unroll
      for (int c = 0; c < kCols; ++c) {
        if (32 * c >= Ev) continue;
#pragma unroll
        for (int u = 0; u < 4; ++u)
          if (!kSkipZeros || pu[u] != 0.f) o[r][c] = fmaf(pu[u], vv[u][c], o[r][c]);  // pu: same in every lane
      }
    }
  }
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) v2_kernel(const FwdParams p) {
  constexpr int kCols = D / 32;  // output columns per lane
  extern __shared__ float4 smem4[];
  const int E = static_cast<int>(p.E), Ev = static_cast<int>(p.Ev);
  const Layout lay(E, Ev);
  float* Qs = reinterpret_cast<float*>(smem4);  // [kRows][q_stride], pre-scaled to log2 units
  float* Ks = Qs + lay.q_floats();               // [kKeys][k_stride]
  float* Vs = Ks + lay.k_floats();               // [kKeys][v_stride]
  float* Ps = Vs + lay.v_floats();               // [kWarps][kRowsPerWarp][kKeys]
  float* Ms = Ps + lay.p_floats();               // [kRows][kMaskStride], only with a mask

  const BlockWork w = block_work(p, kRows);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t rows_end = w.i0 + kRows < p.L ? w.i0 + kRows : p.L;
  const int64_t block_key_end = p.causal_key_end(rows_end - 1);
  const bool has_mask = p.mask_kind != MaskKind::kNone;
  const int64_t mask_base = w.b * p.m_sb + w.h * p.m_sh;

  const T* k = static_cast<const T*>(p.k) + w.b * p.k_sb + w.hk * p.k_sh;
  const T* v = static_cast<const T*>(p.v) + w.b * p.v_sb + w.hk * p.v_sh;
  const bool vec_k = rows_aligned16(p.k, p.k_sb, p.k_sh, p.k_sl, sizeof(T));
  const bool vec_v = rows_aligned16(p.v, p.v_sb, p.v_sh, p.v_sl, sizeof(T));

  stage_rows(Qs, lay.q_stride, static_cast<const T*>(p.q) + w.b * p.q_sb + w.h * p.q_sh, p.q_sl, w.i0, p.L, kRows,
             E, lay.e8, rows_aligned16(p.q, p.q_sb, p.q_sh, p.q_sl, sizeof(T)), p.scale_log2);

  const int row0 = warp * kRowsPerWarp;  // first of this warp's rows within the block
  float m[kRowsPerWarp], l[kRowsPerWarp], o[kRowsPerWarp][kCols];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.f;
#pragma unroll
    for (int c = 0; c < kCols; ++c) o[r][c] = 0.f;
  }
  float* Pw = Ps + warp * kRowsPerWarp * kKeys;

  for (int64_t j0 = 0; j0 < block_key_end; j0 += kKeys) {
    __syncthreads();  // every warp is done with the previous tile (and Qs is written)
    stage_rows(Ks, lay.k_stride, k, p.k_sl, j0, block_key_end, kKeys, E, lay.e8, vec_k, 1.f);
    stage_rows(Vs, lay.v_stride, v, p.v_sl, j0, block_key_end, kKeys, Ev, lay.v_stride, vec_v, 1.f);
    if (has_mask) stage_mask(Ms, kMaskStride, p, mask_base, w.i0, p.L, kRows, j0, block_key_end, kKeys);
    __syncthreads();

    if (has_mask) {
      // A key no row of the block sees gets a zero V row: its probability is 0 in
      // every row, and 0 * 0 stays 0 even if V held NaN there. Lane = row here.
      const int64_t i = w.i0 + lane;
      const int64_t lane_row_end = i < p.L ? p.causal_key_end(i) : 0;
      for (int c = warp; c < kKeys; c += kWarps) {
        const bool seen = j0 + c < lane_row_end && Ms[lane * kMaskStride + c] != -INFINITY;
        if (!__any_sync(kFullMask, seen)) {
          for (int e = lane; e < lay.v_stride; e += 32) Vs[c * lay.v_stride + e] = 0.f;
        }
      }
    }

    // Scores: lane = key j0 + lane against the warp's rows.
    float s[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) s[r] = 0.f;
    const float* krow = Ks + lane * lay.k_stride;
#pragma unroll
    for (int ch = 0; ch < D / 4; ++ch) {
      if (4 * ch < lay.e8) {
        const float4 kk = *reinterpret_cast<const float4*>(krow + 4 * ch);
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) {
          const float4 qq = *reinterpret_cast<const float4*>(Qs + (row0 + r) * lay.q_stride + 4 * ch);
          s[r] = fmaf(qq.x, kk.x, s[r]);
          s[r] = fmaf(qq.y, kk.y, s[r]);
          s[r] = fmaf(qq.z, kk.z, s[r]);
          s[r] = fmaf(qq.w, kk.w, s[r]);
        }
      }
    }

    // Online softmax, one row at a time; m, alpha and the branch are warp-uniform.
    bool zero_weight = false;  // a real row gives one of the tile's real keys zero weight
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const float bias = has_mask ? Ms[(row0 + r) * kMaskStride + lane] : 0.f;
      // Recomputed per tile rather than kept: 8 int64 ends would cost 16 registers.
      const int64_t i = w.i0 + row0 + r;
      const int64_t row_end = i < p.L ? p.causal_key_end(i) : 0;
      const bool visible = j0 + lane < row_end && bias != -INFINITY;
      const float sc = visible ? s[r] + bias : -INFINITY;  // by selection: a NaN from a hidden K row is dropped
      const float m_new = fmaxf(m[r], warp_max(sc));
      float pr = 0.f;
      if (m_new != -INFINITY) {  // else the row has seen nothing yet: never form (-inf) - (-inf)
        const float alpha = exp2f(m[r] - m_new);
        pr = exp2f(sc - m_new);
        l[r] = fmaf(l[r], alpha, pr);
#pragma unroll
        for (int c = 0; c < kCols; ++c) o[r][c] *= alpha;
        m[r] = m_new;
      }
      Pw[r * kKeys + lane] = pr;
      zero_weight |= pr == 0.f && i < p.L && j0 + lane < block_key_end;
    }
    if (has_mask) {
      __syncthreads();  // V rows zeroed by other warps
    } else {
      __syncwarp();
    }

    const int tile_keys = block_key_end - j0 < kKeys ? static_cast<int>(block_key_end - j0) : kKeys;
    if (__any_sync(0xffffffffu, zero_weight)) {
      accumulate_pv<true>(o, Pw, Vs, lay.v_stride, tile_keys, Ev, lane);
    } else {
      accumulate_pv<false>(o, Pw, Vs, lay.v_stride, tile_keys, Ev, lane);
    }
  }

#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const float l_row = warp_sum(l[r]);
    const int64_t i = w.i0 + row0 + r;
    if (i >= p.L) continue;
    T* out = static_cast<T*>(p.out) + w.b * p.o_sb + w.h * p.o_sh + i * p.o_sl;
    const float inv = l_row > 0.f ? 1.f / l_row : 0.f;  // rows that saw no key: out 0
#pragma unroll
    for (int c = 0; c < kCols; ++c) {
      const int e = 32 * c + lane;
      if (e < Ev) out[e] = from_float<T>(o[r][c] * inv);
    }
    if (lane == 0) p.lse[(w.b * p.H + w.h) * p.L + i] = l_row > 0.f ? (m[r] + __log2f(l_row)) * kLn2 : -INFINITY;
  }
}

template <typename T, int D>
void launch_bucket(const FwdParams& p, cudaStream_t stream) {
  const size_t smem = smem_bytes(p);
  allow_dynamic_smem(v2_kernel<T, D>, smem);
  v2_kernel<T, D><<<grid_blocks(p, kRows), kThreads, smem, stream>>>(p);
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

void launch_v2_warp(const FwdParams& p, cudaStream_t stream) {
  switch (p.dtype) {
    case ScalarKind::kFloat16: return launch_dtype<__half>(p, stream);
    case ScalarKind::kBFloat16: return launch_dtype<__nv_bfloat16>(p, stream);
    case ScalarKind::kFloat32: return launch_dtype<float>(p, stream);
    default: return;  // the host side admits only these three dtypes on CUDA
  }
}

}  // namespace flash_attn_ext::cuda
