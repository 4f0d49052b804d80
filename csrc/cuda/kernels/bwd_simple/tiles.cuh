// The pieces both bwd_simple kernels share: tile sizes, the shared-memory layout, the staging of a
// query tile (Q, dO, LSE, D), the recomputation of one (query tile x key tile) block of P and dS, and
// dQ += dS K over a key tile. CUDA cores, float32 everywhere (inputs are converted when staged).
//
// Every shared-memory row stride is a multiple of 32 floats (plus 4 for K and V), so a lane that owns
// columns lane, lane + 32, ... never leaves its row, and K / V rows read by 32 lanes at once (one key
// per lane, 16-byte chunks) fall on distinct banks (an odd number of float4s per row, as in v2).
#pragma once

#include <cstdint>

#include "../common.cuh"
#include "../tile_load.cuh"

namespace flash_attn_ext::cuda::bwd_simple {

constexpr int kThreads = 128;  // 4 warps

// D: the head-dim bucket (max(E, Ev) rounded up to 32, 64, 128 or 256). kBc keys per key tile,
// kBr query rows per query tile: 256-wide rows get half of each so that one CTA's tiles stay near
// 50 KB of shared memory (which every sm the extension builds for grants with the opt-in).
template <int D>
struct Tiles {
  static constexpr int kBc = D <= 128 ? 32 : 16;
  static constexpr int kBr = D <= 128 ? 16 : 8;
  static constexpr int kCols = D / 32;                       // columns per lane
  static constexpr int kPairs = kBr * kBc / kThreads;        // (row, key) pairs per thread in probs_tile
  static constexpr int kKeysPerWarp = kBc / (kThreads / 32);  // dK/dV rows per warp
  static constexpr int kRowsPerWarp = kBr / (kThreads / 32);  // dQ rows per warp
  static_assert(kPairs >= 1 && kKeysPerWarp >= 1 && kRowsPerWarp >= 1, "tiles too small for 4 warps");
  static_assert(kThreads % kBc == 0, "a thread keeps one key in probs_tile");
};

// Row strides (floats) for head dims E and Ev, and where each buffer starts.
struct Layout {
  int e32, ev32;     // E and Ev rounded up to 32: the staged width (zeros past E / Ev)
  int qs, dos, ks, vs;  // row strides of Q, dO, K, V
  int br, bc;
  __host__ __device__ Layout(int64_t E, int64_t Ev, int br_, int bc_)
      : e32(static_cast<int>((E + 31) / 32 * 32)),
        ev32(static_cast<int>((Ev + 31) / 32 * 32)),
        qs(e32), dos(ev32), ks(e32 + 4), vs(ev32 + 4), br(br_), bc(bc_) {}
  // sQ [br][qs], sdO [br][dos], sK [bc][ks], sV [bc][vs], sP [br][bc], sdS [br][bc], sLse2 [br], sD [br]
  __host__ __device__ int q_off() const { return 0; }
  __host__ __device__ int do_off() const { return q_off() + br * qs; }
  __host__ __device__ int k_off() const { return do_off() + br * dos; }
  __host__ __device__ int v_off() const { return k_off() + bc * ks; }
  __host__ __device__ int p_off() const { return v_off() + bc * vs; }
  __host__ __device__ int ds_off() const { return p_off() + br * bc; }
  __host__ __device__ int lse_off() const { return ds_off() + br * bc; }
  __host__ __device__ int d_off() const { return lse_off() + br; }
  __host__ __device__ size_t bytes() const { return static_cast<size_t>(d_off() + br) * sizeof(float); }
};

// Query rows [i0, i0 + br) of head h: Q, dO (zeros past L), lse2 = lse * log2(e) (+inf for a row
// that saw no key or lies past L: its P is 0 without forming -inf - -inf) and D = rowsum(dO O) - dlse.
template <typename T>
__device__ __forceinline__ void stage_queries(const BwdParams& bp, const Layout& lay, float* smem, int64_t b,
                                              int64_t h, int64_t i0) {
  const FwdParams& p = bp.fwd;
  const T* q = static_cast<const T*>(p.q) + b * p.q_sb + h * p.q_sh;
  const T* dout = static_cast<const T*>(bp.dout) + b * bp.do_sb + h * bp.do_sh;
  stage_rows(smem + lay.q_off(), lay.qs, q, p.q_sl, i0, p.L, lay.br, static_cast<int>(p.E), lay.e32,
             rows_aligned16(p.q, p.q_sb, p.q_sh, p.q_sl, sizeof(T)), 1.f);
  stage_rows(smem + lay.do_off(), lay.dos, dout, bp.do_sl, i0, p.L, lay.br, static_cast<int>(p.Ev), lay.ev32,
             rows_aligned16(bp.dout, bp.do_sb, bp.do_sh, bp.do_sl, sizeof(T)), 1.f);
  const int64_t base = (b * p.H + h) * p.L;
  for (int r = threadIdx.x; r < lay.br; r += blockDim.x) {
    const int64_t row = i0 + r;
    float lse2 = INFINITY, d = 0.f;
    if (row < p.L) {
      const float l = p.lse[base + row];
      if (l != -INFINITY) lse2 = l * kLog2e;
      d = static_cast<const float*>(bp.delta)[base + row];
    }
    smem[lay.lse_off() + r] = lse2;
    smem[lay.d_off() + r] = d;
  }
}

// Keys [j0, j0 + bc) of kv head hk: K and V rows (zeros past S).
template <typename T>
__device__ __forceinline__ void stage_keys(const FwdParams& p, const Layout& lay, float* smem, int64_t b, int64_t hk,
                                           int64_t j0) {
  const T* k = static_cast<const T*>(p.k) + b * p.k_sb + hk * p.k_sh;
  const T* v = static_cast<const T*>(p.v) + b * p.v_sb + hk * p.v_sh;
  stage_rows(smem + lay.k_off(), lay.ks, k, p.k_sl, j0, p.S, lay.bc, static_cast<int>(p.E), lay.e32,
             rows_aligned16(p.k, p.k_sb, p.k_sh, p.k_sl, sizeof(T)), 1.f);
  stage_rows(smem + lay.v_off(), lay.vs, v, p.v_sl, j0, p.S, lay.bc, static_cast<int>(p.Ev), lay.ev32,
             rows_aligned16(p.v, p.v_sb, p.v_sh, p.v_sl, sizeof(T)), 1.f);
}

// sP and sdS of the staged query tile (rows i0.., head h) against the staged key tile (keys j0..):
// p = exp2(scale log2(e) q.k + bias log2(e) - lse2), dS = p (dO.v - D). Thread t takes key t % bc and
// rows t / bc + (threads / bc) u: the K and V rows are read once for all its rows, the Q and dO rows
// are broadcasts. Hidden pairs (tails, causal, a false / -inf mask entry, a row that saw no key) get
// p = dS = 0 by selection, so NaN/Inf in a hidden K or V row never reaches them. dscores, when not
// null, receives dS of the visible pairs (the host zeroed it). Returns whether this thread wrote a
// nonzero dS (the caller skips a tile where no thread did).
template <int D>
__device__ __forceinline__ bool probs_tile(const BwdParams& bp, const Layout& lay, float* smem, int64_t b, int64_t h,
                                           int64_t i0, int64_t j0, float* dscores) {
  using Tl = Tiles<D>;
  const FwdParams& p = bp.fwd;
  const int j = threadIdx.x % Tl::kBc, r0 = threadIdx.x / Tl::kBc;
  constexpr int kRowStep = kThreads / Tl::kBc;
  const float* sQ = smem + lay.q_off();
  const float* sdO = smem + lay.do_off();
  const float* krow = smem + lay.k_off() + j * lay.ks;
  const float* vrow = smem + lay.v_off() + j * lay.vs;

  float s[Tl::kPairs], dp[Tl::kPairs];
#pragma unroll
  for (int u = 0; u < Tl::kPairs; ++u) s[u] = dp[u] = 0.f;
  // Columns past E (Ev) are zeros in both operands; e32 / 4 chunks of 4.
#pragma unroll 2
  for (int c = 0; c < lay.e32; c += 4) {
    const float4 kk = *reinterpret_cast<const float4*>(krow + c);
#pragma unroll
    for (int u = 0; u < Tl::kPairs; ++u) {
      const float4 qq = *reinterpret_cast<const float4*>(sQ + (r0 + kRowStep * u) * lay.qs + c);
      s[u] = fmaf(qq.x, kk.x, fmaf(qq.y, kk.y, fmaf(qq.z, kk.z, fmaf(qq.w, kk.w, s[u]))));
    }
  }
#pragma unroll 2
  for (int c = 0; c < lay.ev32; c += 4) {
    const float4 vv = *reinterpret_cast<const float4*>(vrow + c);
#pragma unroll
    for (int u = 0; u < Tl::kPairs; ++u) {
      const float4 oo = *reinterpret_cast<const float4*>(sdO + (r0 + kRowStep * u) * lay.dos + c);
      dp[u] = fmaf(oo.x, vv.x, fmaf(oo.y, vv.y, fmaf(oo.z, vv.z, fmaf(oo.w, vv.w, dp[u]))));
    }
  }

  const int64_t key = j0 + j;
  const bool has_mask = p.mask_kind != MaskKind::kNone;
  const int64_t mask_base = b * p.m_sb + h * p.m_sh;
  bool any = false;
#pragma unroll
  for (int u = 0; u < Tl::kPairs; ++u) {
    const int r = r0 + kRowStep * u;
    const int64_t row = i0 + r;
    const float lse2 = smem[lay.lse_off() + r];
    bool visible = row < p.L && key < p.S && lse2 != INFINITY &&
                   (p.causal == CausalMode::kNone || key <= row + p.causal_offset);
    float x = s[u] * p.scale_log2 - lse2;
    if (visible && has_mask) {
      const float bias = mask_bias_log2(p, mask_base + row * p.m_sl + key * p.m_ss);
      visible = bias != -INFINITY;
      x += bias;
    }
    float pr = 0.f, ds = 0.f;
    if (visible) {
      pr = exp2f(x);
      ds = pr == 0.f ? 0.f : pr * (dp[u] - smem[lay.d_off() + r]);
      if (dscores != nullptr) dscores[((b * p.H + h) * p.L + row) * p.S + key] = ds;
    }
    smem[lay.p_off() + r * lay.bc + j] = pr;
    smem[lay.ds_off() + r * lay.bc + j] = ds;
    any |= ds != 0.f || pr != 0.f;
  }
  return any;
}

// acc[rr][cc] += sum over the key tile of dS[row][j] K[j][col] for this warp's rows
// warp * kRowsPerWarp + rr and this lane's columns lane + 32 cc. A zero dS is skipped (warp-uniform
// test), so a hidden K row holding NaN/Inf never meets it.
template <int D>
__device__ __forceinline__ void dq_tile(const Layout& lay, const float* smem,
                                        float (&acc)[Tiles<D>::kRowsPerWarp][Tiles<D>::kCols]) {
  using Tl = Tiles<D>;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float* sK = smem + lay.k_off();
  const float* sdS = smem + lay.ds_off() + warp * Tl::kRowsPerWarp * lay.bc;
#pragma unroll 2
  for (int j = 0; j < Tl::kBc; ++j) {
    float kv[Tl::kCols];
#pragma unroll
    for (int cc = 0; cc < Tl::kCols; ++cc) kv[cc] = 32 * cc < lay.e32 ? sK[j * lay.ks + 32 * cc + lane] : 0.f;
#pragma unroll
    for (int rr = 0; rr < Tl::kRowsPerWarp; ++rr) {
      const float ds = sdS[rr * lay.bc + j];
      if (ds == 0.f) continue;
#pragma unroll
      for (int cc = 0; cc < Tl::kCols; ++cc) acc[rr][cc] = fmaf(ds, kv[cc], acc[rr][cc]);
    }
  }
}

}  // namespace flash_attn_ext::cuda::bwd_simple
