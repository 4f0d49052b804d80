// The scalar tiled backward on the CPU, used for float64 inputs (gradcheck); float32 and the
// 16-bit types take the vectorised kernel in flash_backward*.
//
// With P recomputed tile by tile from the saved LSE (P = exp(scale*q.k + bias - lse)):
//   dV_j = sum_i P_ij dO_i          dP_ij = dO_i . V_j        dS_ij = P_ij (dP_ij - D_i)
//   dK_j = scale sum_i dS_ij Q_i    dQ_i = scale sum_j dS_ij K_j
// where D_i = rowsum(dO_i * O_i) (minus the lse gradient) is precomputed by the host.
// Pass 1 owns a key block and walks the query blocks (dK, dV); pass 2 owns a query
// block and walks the key blocks (dQ). P, dP and dS are never stored beyond one tile.
#include <algorithm>
#include <cmath>
#include <limits>

#include "../common/numeric.h"
#include "backward_kernels.h"

namespace flash_attn_ext::cpu {
namespace {

constexpr int64_t kBwdBlockQ = 64;   // query rows per tile
constexpr int64_t kBwdBlockK = 64;   // keys per tile

// One (query tile x key tile) of P and dS for head (b, h): the shared inner step of both passes.
// Writes P into p_tile and dS into ds_tile (rows x cols, row stride kBwdBlockK); returns false when
// the tile has no visible pair, so the caller can skip it.
bool tile_p_ds(const BwdParams& bp, int64_t b, int64_t h, int64_t i0, int64_t rows, int64_t j0, int64_t cols,
               double* p_tile, double* ds_tile) {
  const FwdParams& p = bp.fwd;
  const double kNegInf = -std::numeric_limits<double>::infinity();
  const double scale = p.scale_f64;
  const int64_t hk = h / p.group;
  const double* q = static_cast<const double*>(p.q) + b * p.q_sb + h * p.q_sh;
  const double* k = static_cast<const double*>(p.k) + b * p.k_sb + hk * p.k_sh;
  const double* v = static_cast<const double*>(p.v) + b * p.v_sb + hk * p.v_sh;
  const double* dout = static_cast<const double*>(bp.dout) + b * bp.do_sb + h * bp.do_sh;
  const double* delta = static_cast<const double*>(bp.delta) + (b * p.H + h) * p.L;
  const float* lse = p.lse + (b * p.H + h) * p.L;
  bool any = false;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = i0 + r;
    const int64_t row_end = p.causal_key_end(i);
    const double row_lse = lse[i];
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t j = j0 + c;
      double& pv = p_tile[r * kBwdBlockK + c];
      double& ds = ds_tile[r * kBwdBlockK + c];
      pv = 0;
      ds = 0;
      if (j >= row_end || row_lse == kNegInf) continue;
      double bias = 0;
      if (p.mask_kind != MaskKind::kNone) {
        bias = mask_bias(p, b * p.m_sb + h * p.m_sh + i * p.m_sl + j * p.m_ss);
        if (bias == kNegInf) continue;
      }
      // Step 1: recompute P from the saved LSE.
      double dot = 0;
      for (int64_t e = 0; e < p.E; ++e) dot += q[i * p.q_sl + e] * k[j * p.k_sl + e];
      pv = std::exp(scale * dot + bias - row_lse);
      // Step 2: dP = dO . V, then dS = P (dP - D).
      double dp = 0;
      for (int64_t e = 0; e < p.Ev; ++e) dp += dout[i * bp.do_sl + e] * v[j * p.v_sl + e];
      ds = pv * (dp - delta[i]);
      any = true;
    }
  }
  return any;
}

void kv_items(const BwdParams& bp, int64_t w_begin, int64_t w_end, void* scratch) {
  const FwdParams& p = bp.fwd;
  const int64_t k_blocks = (p.S + kBwdBlockK - 1) / kBwdBlockK;
  double* p_tile = static_cast<double*>(scratch);
  double* ds_tile = p_tile + kBwdBlockQ * kBwdBlockK;
  double* dk_acc = ds_tile + kBwdBlockQ * kBwdBlockK;  // (kBwdBlockK, E)
  double* dv_acc = dk_acc + kBwdBlockK * p.E;          // (kBwdBlockK, Ev)
  const double scale = p.scale_f64;
  for (int64_t w = w_begin; w < w_end; ++w) {
    const int64_t kb = w % k_blocks, bhk = w / k_blocks, b = bhk / p.Hkv, hk = bhk % p.Hkv;
    const int64_t j0 = kb * kBwdBlockK, cols = std::min(kBwdBlockK, p.S - j0);
    std::fill(dk_acc, dk_acc + cols * p.E, 0.0);
    std::fill(dv_acc, dv_acc + cols * p.Ev, 0.0);
    for (int64_t h = hk * p.group; h < (hk + 1) * p.group; ++h) {
      const double* q = static_cast<const double*>(p.q) + b * p.q_sb + h * p.q_sh;
      const double* dout = static_cast<const double*>(bp.dout) + b * bp.do_sb + h * bp.do_sh;
      for (int64_t i0 = 0; i0 < p.L; i0 += kBwdBlockQ) {
        const int64_t rows = std::min(kBwdBlockQ, p.L - i0);
        if (p.causal_key_end(i0 + rows - 1) <= j0) continue;  // the whole tile is above the diagonal
        if (!tile_p_ds(bp, b, h, i0, rows, j0, cols, p_tile, ds_tile)) continue;
        // Step 3: dV += P^T dO and dK += scale dS^T Q; zero entries skipped so hidden rows add nothing.
        for (int64_t r = 0; r < rows; ++r) {
          const double* dorow = dout + (i0 + r) * bp.do_sl;
          const double* qrow = q + (i0 + r) * p.q_sl;
          for (int64_t c = 0; c < cols; ++c) {
            const double pv = p_tile[r * kBwdBlockK + c], ds = ds_tile[r * kBwdBlockK + c];
            if (pv == 0.0) continue;
            for (int64_t e = 0; e < p.Ev; ++e) dv_acc[c * p.Ev + e] += pv * dorow[e];
            for (int64_t e = 0; e < p.E; ++e) dk_acc[c * p.E + e] += ds * qrow[e];
          }
        }
      }
    }
    double* dk = static_cast<double*>(bp.dk) + ((b * p.Hkv + hk) * p.S + j0) * p.E;
    double* dv = static_cast<double*>(bp.dv) + ((b * p.Hkv + hk) * p.S + j0) * p.Ev;
    for (int64_t x = 0; x < cols * p.E; ++x) dk[x] = dk_acc[x] * scale;
    for (int64_t x = 0; x < cols * p.Ev; ++x) dv[x] = dv_acc[x];
  }
}

void q_items(const BwdParams& bp, int64_t w_begin, int64_t w_end, void* scratch) {
  const FwdParams& p = bp.fwd;
  const int64_t q_blocks = (p.L + kBwdBlockQ - 1) / kBwdBlockQ;
  double* p_tile = static_cast<double*>(scratch);
  double* ds_tile = p_tile + kBwdBlockQ * kBwdBlockK;
  double* dq_acc = ds_tile + kBwdBlockQ * kBwdBlockK;  // (kBwdBlockQ, E)
  const double scale = p.scale_f64;
  for (int64_t w = w_begin; w < w_end; ++w) {
    const int64_t qb = w % q_blocks, bh = w / q_blocks, b = bh / p.H, h = bh % p.H, hk = h / p.group;
    const int64_t i0 = qb * kBwdBlockQ, rows = std::min(kBwdBlockQ, p.L - i0);
    const double* k = static_cast<const double*>(p.k) + b * p.k_sb + hk * p.k_sh;
    std::fill(dq_acc, dq_acc + rows * p.E, 0.0);
    const int64_t key_end = p.causal_key_end(i0 + rows - 1);
    for (int64_t j0 = 0; j0 < key_end; j0 += kBwdBlockK) {
      const int64_t cols = std::min(kBwdBlockK, p.S - j0);
      if (!tile_p_ds(bp, b, h, i0, rows, j0, cols, p_tile, ds_tile)) continue;
      // Step 3: dQ += scale dS K; the mask gradient is dS itself.
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
          const double ds = ds_tile[r * kBwdBlockK + c];
          if (bp.dscores != nullptr)
            static_cast<double*>(bp.dscores)[((b * p.H + h) * p.L + i0 + r) * p.S + j0 + c] = ds;
          if (p_tile[r * kBwdBlockK + c] == 0.0) continue;
          const double* krow = k + (j0 + c) * p.k_sl;
          for (int64_t e = 0; e < p.E; ++e) dq_acc[r * p.E + e] += ds * krow[e];
        }
      }
    }
    double* dq = static_cast<double*>(bp.dq) + ((b * p.H + h) * p.L + i0) * p.E;
    for (int64_t x = 0; x < rows * p.E; ++x) dq[x] = dq_acc[x] * scale;
  }
}

}  // namespace

int64_t backward_kv_num_work(const BwdParams& p) {
  return p.fwd.B * p.fwd.Hkv * ((p.fwd.S + kBwdBlockK - 1) / kBwdBlockK);
}

int64_t backward_q_num_work(const BwdParams& p) {
  return p.fwd.B * p.fwd.H * ((p.fwd.L + kBwdBlockQ - 1) / kBwdBlockQ);
}

size_t backward_scratch_bytes(const BwdParams& p) {
  const int64_t rows = std::max(kBwdBlockQ, kBwdBlockK);
  return sizeof(double) * static_cast<size_t>(2 * kBwdBlockQ * kBwdBlockK + rows * (p.fwd.E + p.fwd.Ev));
}

void backward_kv(const BwdParams& p, int64_t b, int64_t e, void* s) { kv_items(p, b, e, s); }
void backward_q(const BwdParams& p, int64_t b, int64_t e, void* s) { q_items(p, b, e, s); }

}  // namespace flash_attn_ext::cpu
