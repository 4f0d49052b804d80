// The vectorised flash backward (float32 / float16 / bfloat16 in, float32 math), written
// once over a Simd type like the forward (flash_forward_impl.h) and sharing its tiles.
//
// With P recomputed from the saved LSE, for one key tile (keys c) and query block (rows r),
// everything key-major with the queries in the vector lanes:
//   S[c][r] = K[c] . Qt      P = exp2(S - lse2)      dP[c][r] = V[c] . dOt
//   dS = P (dP - D)          dV[c] += P[c] . dO      dK[c] += dS[c] . Q      dQ[r] += dS[.][r] . K
// S and dP are the forward's score micro-kernel (keys broadcast against query lanes); the three
// products are flash_gemm_acc.h. One pass: a work item owns a chunk of key tiles, keeps dK and dV
// of a tile in scratch over all query blocks, and adds dQ into its own partial sum (summed over
// the chunks in a fixed order afterwards), so nothing is atomic and every sum has one order.
// Hidden keys get P exactly 0 and dS exactly 0 (even when dP is NaN), and dQ skips them lane by
// lane in tiles that have any, so NaN/Inf in hidden K/V rows never reaches a gradient.
//
// Included by one .cpp per ISA inside its target region. Everything is a template or has
// internal linkage, and only builtins are used (no std templates).
#pragma once

#include <cstddef>
#include <cstdint>

#include "../common/numeric.h"
#include "flash_backward_vec.h"
#include "flash_gemm_acc.h"
#include "flash_mask_tile.h"
#include "flash_scores.h"
#include "flash_tiles.h"

namespace flash_attn_ext::cpu {
namespace {

// A block of rows (Q or dO) as float, row-major with zero padding up to `lanes` rows and ld
// columns, times `scale`; then transposed W x W into (ld, Br) with the rows in the lanes.
template <class Simd, typename T>
void load_block(const T* src, int64_t ld_src, int64_t rows, int64_t lanes, int64_t cols, int64_t ld, float scale,
                float* row_major, float* transposed) {
  constexpr int W = Simd::kWidth;
  convert_rows<Simd>(src, ld_src, rows, cols, row_major, ld);
  for (int64_t x = rows * ld; x < lanes * ld; ++x) row_major[x] = 0.0f;
  if (scale != 1.0f) {
    const typename Simd::V sv = Simd::set1(scale);
    for (int64_t x = 0; x < rows * ld; x += W) Simd::store(row_major + x, Simd::mul(Simd::load(row_major + x), sv));
  }
  for (int64_t r = 0; r < lanes; r += W)
    for (int64_t e = 0; e < ld; e += W) Simd::transpose(row_major + r * ld + e, ld, transposed + e * kBr + r, kBr);
}

// P = exp2(S - lse2) in place of S; dS = P (dP - D) in place of dP, exactly 0 where P is 0.
template <class Simd>
void probs_and_ds(int64_t lanes, int64_t cols, const float* lse2, const float* d, float* st, float* dp) {
  using V = typename Simd::V;
  constexpr int W = Simd::kWidth;
  for (int64_t r = 0; r < lanes; r += W) {
    const V l = Simd::load(lse2 + r), dr = Simd::load(d + r);
    for (int64_t c = 0; c < cols; ++c) {
      const V pr = Simd::exp2(Simd::sub(Simd::load(st + c * kBr + r), l));
      Simd::store(st + c * kBr + r, pr);
      Simd::store(dp + c * kBr + r, Simd::mul_live(pr, Simd::sub(Simd::load(dp + c * kBr + r), dr)));
    }
  }
}

// A tile of K or V as float rows: in place when float32 rows are whole vectors, else converted.
template <class Simd, typename T>
const float* tile_rows(const T* src, int64_t ld_src, int64_t rows, int64_t cols, float* buf, int64_t ld_buf,
                       int64_t* ld_out) {
  if constexpr (sizeof(T) == 4) {
    if (cols % Simd::kWidth == 0) {
      *ld_out = ld_src;
      return reinterpret_cast<const float*>(src);
    }
  }
  convert_rows<Simd>(src, ld_src, rows, cols, buf, ld_buf);
  *ld_out = ld_buf;
  return buf;
}

template <class Simd, typename T>
void backward_item(const BwdParams& bp, const BwdScratch& s, int64_t chunks, int64_t w, void* scratch,
                   float* dq_part) {
  constexpr int W = Simd::kWidth;
  const FwdParams& p = bp.fwd;
  char* base = static_cast<char*>(scratch);
  float* qr = reinterpret_cast<float*>(base + s.qr);
  float* qt = reinterpret_cast<float*>(base + s.qt);
  float* dor = reinterpret_cast<float*>(base + s.dor);
  float* dot = reinterpret_cast<float*>(base + s.dot);
  float* kc = reinterpret_cast<float*>(base + s.kc);
  float* vc = reinterpret_cast<float*>(base + s.vc);
  float* st = reinterpret_cast<float*>(base + s.st);
  float* dp = reinterpret_cast<float*>(base + s.dp);
  float* bias = reinterpret_cast<float*>(base + s.bias);
  float* mask_rows = reinterpret_cast<float*>(base + s.mask_rows);
  float* dk_acc = reinterpret_cast<float*>(base + s.dk);
  float* dv_acc = reinterpret_cast<float*>(base + s.dv);
  float* lse2 = reinterpret_cast<float*>(base + s.rowstats);
  float* dl = lse2 + kBr;
  const int64_t ld_e = s.ld_e, ld_v = s.ld_v;
  const int64_t nvec_e = (p.E + W - 1) / W, nvec_v = (p.Ev + W - 1) / W;
  const bool masked = p.mask_kind != MaskKind::kNone;
  const int64_t k_blocks = (p.S + kBc - 1) / kBc, q_blocks = (p.L + kBr - 1) / kBr;

  const int64_t chunk = w % chunks, bhk = w / chunks, b = bhk / p.Hkv, hk = bhk % p.Hkv, h0 = hk * p.group;
  float* dq_chunk = dq_part + ((chunk * p.B + b) * p.H + h0) * p.L * ld_e;
  for (int64_t x = 0; x < p.group * p.L * ld_e; ++x) dq_chunk[x] = 0.0f;
  const T* k = static_cast<const T*>(p.k) + b * p.k_sb + hk * p.k_sh;
  const T* v = static_cast<const T*>(p.v) + b * p.v_sb + hk * p.v_sh;

  for (int64_t kb = chunk; kb < k_blocks; kb += chunks) {
    const int64_t j0 = kb * kBc, cols = min_i64(kBc, p.S - j0);
    int64_t ldk, ldv;
    const float* kt = tile_rows<Simd>(k + j0 * p.k_sl, p.k_sl, cols, p.E, kc, ld_e, &ldk);
    const float* vt = tile_rows<Simd>(v + j0 * p.v_sl, p.v_sl, cols, p.Ev, vc, ld_v, &ldv);
    for (int64_t x = 0; x < cols * ld_e; ++x) dk_acc[x] = 0.0f;
    for (int64_t x = 0; x < cols * ld_v; ++x) dv_acc[x] = 0.0f;

    for (int64_t h = h0; h < h0 + p.group; ++h) {
      const T* q = static_cast<const T*>(p.q) + b * p.q_sb + h * p.q_sh;
      const T* dout = static_cast<const T*>(bp.dout) + b * bp.do_sb + h * bp.do_sh;
      const float* lse = p.lse + (b * p.H + h) * p.L;
      const float* delta = static_cast<const float*>(bp.delta) + (b * p.H + h) * p.L;
      float* dq_head = dq_chunk + (h - h0) * p.L * ld_e;
      for (int64_t qb = 0; qb < q_blocks; ++qb) {
        const int64_t i0 = qb * kBr, rows = min_i64(kBr, p.L - i0), lanes = (rows + W - 1) / W * W;
        if (p.causal_key_end(i0 + rows - 1) <= j0) continue;  // the whole tile is above the diagonal
        const bool causal_cut = j0 + cols > p.causal_key_end(i0);
        TileMask tm = TileMask::kClear;
        if (masked) {
          tm = load_bias<Simd>(p, b, h, i0, rows, lanes, j0, cols, bias, mask_rows);
          if (tm == TileMask::kAllHidden) continue;
        }
        for (int64_t r = 0; r < lanes; ++r) {
          const bool live = r < rows && lse[i0 + r] != -__builtin_inff();
          lse2[r] = live ? lse[i0 + r] * kLog2e : __builtin_inff();  // +inf: every p of the row is 0
          dl[r] = r < rows ? delta[i0 + r] : 0.0f;
        }
        load_block<Simd>(q + i0 * p.q_sl, p.q_sl, rows, lanes, p.E, ld_e, p.scale_log2, qr, qt);
        load_block<Simd>(dout + i0 * bp.do_sl, bp.do_sl, rows, lanes, p.Ev, ld_v, 1.0f, dor, dot);

        compute_scores<Simd>(kt, ldk, cols, qt, p.E, lanes, st);
        if (masked || causal_cut) apply_masks<Simd>(p, i0, lanes, j0, cols, masked ? bias : nullptr, causal_cut, st);
        compute_scores<Simd>(vt, ldv, cols, dot, p.Ev, lanes, dp);
        probs_and_ds<Simd>(lanes, cols, lse2, dl, st, dp);

        accumulate_product<Simd, false>(st, kBr, 1, cols, rows, dor, ld_v, nvec_v, dv_acc, ld_v);
        accumulate_product<Simd, false>(dp, kBr, 1, cols, rows, qr, ld_e, nvec_e, dk_acc, ld_e);
        float* dq_rows = dq_head + i0 * ld_e;
        if (causal_cut || tm == TileMask::kPartial)
          accumulate_product<Simd, true>(dp, 1, kBr, rows, cols, kt, ldk, nvec_e, dq_rows, ld_e);
        else
          accumulate_product<Simd, false>(dp, 1, kBr, rows, cols, kt, ldk, nvec_e, dq_rows, ld_e);

        if (bp.dscores != nullptr) {
          float* ds_out = static_cast<float*>(bp.dscores) + ((b * p.H + h) * p.L + i0) * p.S + j0;
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < cols; ++c) ds_out[r * p.S + c] = dp[c * kBr + r];
        }
      }
    }
    // Q was scaled by scale*log2(e), so dK = scale * dS.Q = ln(2) * dS.(scaled Q).
    T* dk = static_cast<T*>(bp.dk) + ((b * p.Hkv + hk) * p.S + j0) * p.E;
    T* dv = static_cast<T*>(bp.dv) + ((b * p.Hkv + hk) * p.S + j0) * p.Ev;
    for (int64_t c = 0; c < cols; ++c) {
      for (int64_t e = 0; e < p.E; ++e) store_float(dk + c * p.E + e, dk_acc[c * ld_e + e] * kLn2);
      for (int64_t e = 0; e < p.Ev; ++e) store_float(dv + c * p.Ev + e, dv_acc[c * ld_v + e]);
    }
  }
}

// The entry each ISA file exports: picks the input dtype.
template <class Simd>
void flash_backward_vec(const BwdParams& bp, const BwdScratch& s, int64_t chunks, int64_t w, void* scratch,
                        float* dq_part) {
  switch (bp.fwd.dtype) {
    case ScalarKind::kFloat32: return backward_item<Simd, float>(bp, s, chunks, w, scratch, dq_part);
    case ScalarKind::kFloat16: return backward_item<Simd, Half>(bp, s, chunks, w, scratch, dq_part);
    case ScalarKind::kBFloat16: return backward_item<Simd, BFloat16>(bp, s, chunks, w, scratch, dq_part);
    default: return;
  }
}

}  // namespace
}  // namespace flash_attn_ext::cpu
