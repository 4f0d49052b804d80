// The tiled backward on the CPU (portable path).
//
// With P recomputed tile by tile from the saved LSE (P = exp(scale*q.k + bias - lse)):
//   dV_j = sum_i P_ij dO_i          dP_ij = dO_i . V_j        dS_ij = P_ij (dP_ij - D_i)
//   dK_j = scale sum_i dS_ij Q_i    dQ_i = scale sum_j dS_ij K_j
// where D_i = rowsum(dO_i * O_i) (minus the lse gradient) is precomputed by the host.
// Pass 1 owns a key block and walks the query blocks (dK, dV); pass 2 owns a query
// block and walks the key blocks (dQ). P, dP and dS are never stored beyond one tile.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "../common/numeric.h"
#include "backward_kernels.h"
#include "tile_sizes.h"

namespace flash_attn_ext::cpu {
namespace {

constexpr int64_t kBwdBlockQ = 64;   // query rows per tile
constexpr int64_t kBwdBlockK = 64;   // keys per tile

template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };
template <typename T> inline typename AccOf<T>::type ld(const T* p) { return load_float(p); }
template <> inline double ld<double>(const double* p) { return *p; }
template <typename T> inline void st(T* p, typename AccOf<T>::type v) { store_float(p, v); }
template <> inline void st<double>(double* p, double v) { *p = v; }

// One (query tile x key tile) of P and dS for head (b, h): the shared inner step of both passes.
// Writes P into p_tile and dS into ds_tile (rows x cols, row stride kBwdBlockK); returns false when
// the tile has no visible pair, so the caller can skip it.
template <typename T>
bool tile_p_ds(const BwdParams& bp, int64_t b, int64_t h, int64_t i0, int64_t rows, int64_t j0, int64_t cols,
               typename AccOf<T>::type* p_tile, typename AccOf<T>::type* ds_tile) {
  using Acc = typename AccOf<T>::type;
  const FwdParams& p = bp.fwd;
  const Acc kNegInf = -std::numeric_limits<Acc>::infinity();
  const Acc scale = static_cast<Acc>(p.scale_f64);
  const int64_t hk = h / p.group;
  const T* q = static_cast<const T*>(p.q) + b * p.q_sb + h * p.q_sh;
  const T* k = static_cast<const T*>(p.k) + b * p.k_sb + hk * p.k_sh;
  const T* v = static_cast<const T*>(p.v) + b * p.v_sb + hk * p.v_sh;
  const T* dout = static_cast<const T*>(bp.dout) + b * bp.do_sb + h * bp.do_sh;
  const Acc* delta = static_cast<const Acc*>(bp.delta) + (b * p.H + h) * p.L;
  const float* lse = p.lse + (b * p.H + h) * p.L;
  bool any = false;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = i0 + r;
    const int64_t row_end = p.causal_key_end(i);
    const Acc row_lse = static_cast<Acc>(lse[i]);
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t j = j0 + c;
      Acc& pv = p_tile[r * kBwdBlockK + c];
      Acc& ds = ds_tile[r * kBwdBlockK + c];
      pv = 0;
      ds = 0;
      if (j >= row_end || row_lse == kNegInf) continue;
      Acc bias = 0;
      if (p.mask_kind != MaskKind::kNone) {
        bias = static_cast<Acc>(mask_bias(p, b * p.m_sb + h * p.m_sh + i * p.m_sl + j * p.m_ss));
        if (bias == kNegInf) continue;
      }
      // Step 1: recompute P from the saved LSE.
      Acc dot = 0;
      for (int64_t e = 0; e < p.E; ++e) dot += ld(q + i * p.q_sl + e) * ld(k + j * p.k_sl + e);
      pv = std::exp(scale * dot + bias - row_lse);
      // Step 2: dP = dO . V, then dS = P (dP - D).
      Acc dp = 0;
      for (int64_t e = 0; e < p.Ev; ++e) dp += ld(dout + i * bp.do_sl + e) * ld(v + j * p.v_sl + e);
      ds = pv * (dp - delta[i]);
      any = true;
    }
  }
  return any;
}

template <typename T>
void kv_items(const BwdParams& bp, int64_t w_begin, int64_t w_end, void* scratch) {
  using Acc = typename AccOf<T>::type;
  const FwdParams& p = bp.fwd;
  const int64_t k_blocks = (p.S + kBwdBlockK - 1) / kBwdBlockK;
  Acc* p_tile = static_cast<Acc*>(scratch);
  Acc* ds_tile = p_tile + kBwdBlockQ * kBwdBlockK;
  Acc* dk_acc = ds_tile + kBwdBlockQ * kBwdBlockK;  // (kBwdBlockK, E)
  Acc* dv_acc = dk_acc + kBwdBlockK * p.E;          // (kBwdBlockK, Ev)
  const Acc scale = static_cast<Acc>(p.scale_f64);
  for (int64_t w = w_begin; w < w_end; ++w) {
    const int64_t kb = w % k_blocks, bhk = w / k_blocks, b = bhk / p.Hkv, hk = bhk % p.Hkv;
    const int64_t j0 = kb * kBwdBlockK, cols = std::min(kBwdBlockK, p.S - j0);
    std::fill(dk_acc, dk_acc + cols * p.E, Acc(0));
    std::fill(dv_acc, dv_acc + cols * p.Ev, Acc(0));
    for (int64_t h = hk * p.group; h < (hk + 1) * p.group; ++h) {
      const T* q = static_cast<const T*>(p.q) + b * p.q_sb + h * p.q_sh;
      const T* dout = static_cast<const T*>(bp.dout) + b * bp.do_sb + h * bp.do_sh;
      for (int64_t i0 = 0; i0 < p.L; i0 += kBwdBlockQ) {
        const int64_t rows = std::min(kBwdBlockQ, p.L - i0);
        if (p.causal_key_end(i0 + rows - 1) <= j0) continue;  // the whole tile is above the diagonal
        if (!tile_p_ds<T>(bp, b, h, i0, rows, j0, cols, p_tile, ds_tile)) continue;
        // Step 3: dV += P^T dO and dK += scale dS^T Q; zero entries skipped so hidden rows add nothing.
        for (int64_t r = 0; r < rows; ++r) {
          const T* dorow = dout + (i0 + r) * bp.do_sl;
          const T* qrow = q + (i0 + r) * p.q_sl;
          for (int64_t c = 0; c < cols; ++c) {
            const Acc pv = p_tile[r * kBwdBlockK + c], ds = ds_tile[r * kBwdBlockK + c];
            if (pv == Acc(0)) continue;
            for (int64_t e = 0; e < p.Ev; ++e) dv_acc[c * p.Ev + e] += pv * ld(dorow + e);
            for (int64_t e = 0; e < p.E; ++e) dk_acc[c * p.E + e] += ds * ld(qrow + e);
          }
        }
      }
    }
    T* dk = static_cast<T*>(bp.dk) + ((b * p.Hkv + hk) * p.S + j0) * p.E;
    T* dv = static_cast<T*>(bp.dv) + ((b * p.Hkv + hk) * p.S + j0) * p.Ev;
    for (int64_t x = 0; x < cols * p.E; ++x) st(dk + x, dk_acc[x] * scale);
    for (int64_t x = 0; x < cols * p.Ev; ++x) st(dv + x, dv_acc[x]);
  }
}

template <typename T>
void q_items(const BwdParams& bp, int64_t w_begin, int64_t w_end, void* scratch) {
  using Acc = typename AccOf<T>::type;
  const FwdParams& p = bp.fwd;
  const int64_t q_blocks = (p.L + kBwdBlockQ - 1) / kBwdBlockQ;
  Acc* p_tile = static_cast<Acc*>(scratch);
  Acc* ds_tile = p_tile + kBwdBlockQ * kBwdBlockK;
  Acc* dq_acc = ds_tile + kBwdBlockQ * kBwdBlockK;  // (kBwdBlockQ, E)
  const Acc scale = static_cast<Acc>(p.scale_f64);
  for (int64_t w = w_begin; w < w_end; ++w) {
    const int64_t qb = w % q_blocks, bh = w / q_blocks, b = bh / p.H, h = bh % p.H, hk = h / p.group;
    const int64_t i0 = qb * kBwdBlockQ, rows = std::min(kBwdBlockQ, p.L - i0);
    const T* k = static_cast<const T*>(p.k) + b * p.k_sb + hk * p.k_sh;
    std::fill(dq_acc, dq_acc + rows * p.E, Acc(0));
    const int64_t key_end = p.causal_key_end(i0 + rows - 1);
    for (int64_t j0 = 0; j0 < key_end; j0 += kBwdBlockK) {
      const int64_t cols = std::min(kBwdBlockK, p.S - j0);
      if (!tile_p_ds<T>(bp, b, h, i0, rows, j0, cols, p_tile, ds_tile)) continue;
      // Step 3: dQ += scale dS K; the mask gradient is dS itself.
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
          const Acc ds = ds_tile[r * kBwdBlockK + c];
          if (bp.dscores != nullptr)
            static_cast<Acc*>(bp.dscores)[((b * p.H + h) * p.L + i0 + r) * p.S + j0 + c] = ds;
          if (p_tile[r * kBwdBlockK + c] == Acc(0)) continue;
          const T* krow = k + (j0 + c) * p.k_sl;
          for (int64_t e = 0; e < p.E; ++e) dq_acc[r * p.E + e] += ds * ld(krow + e);
        }
      }
    }
    T* dq = static_cast<T*>(bp.dq) + ((b * p.H + h) * p.L + i0) * p.E;
    for (int64_t x = 0; x < rows * p.E; ++x) st(dq + x, dq_acc[x] * scale);
  }
}

template <template <typename> class Fn>
void dispatch(ScalarKind dtype, const BwdParams& bp, int64_t b, int64_t e, void* s) {
  switch (dtype) {
    case ScalarKind::kFloat32: return Fn<float>::run(bp, b, e, s);
    case ScalarKind::kFloat16: return Fn<Half>::run(bp, b, e, s);
    case ScalarKind::kBFloat16: return Fn<BFloat16>::run(bp, b, e, s);
    case ScalarKind::kFloat64: return Fn<double>::run(bp, b, e, s);
    default: return;
  }
}
template <typename T> struct KvPass { static void run(const BwdParams& bp, int64_t b, int64_t e, void* s) { kv_items<T>(bp, b, e, s); } };
template <typename T> struct QPass { static void run(const BwdParams& bp, int64_t b, int64_t e, void* s) { q_items<T>(bp, b, e, s); } };

}  // namespace

int64_t backward_kv_num_work(const BwdParams& p) {
  return p.fwd.B * p.fwd.Hkv * ((p.fwd.S + kBwdBlockK - 1) / kBwdBlockK);
}

int64_t backward_q_num_work(const BwdParams& p) {
  return p.fwd.B * p.fwd.H * ((p.fwd.L + kBwdBlockQ - 1) / kBwdBlockQ);
}

size_t backward_scratch_bytes(const BwdParams& p) {
  const size_t acc = p.fwd.dtype == ScalarKind::kFloat64 ? sizeof(double) : sizeof(float);
  const int64_t rows = std::max(kBwdBlockQ, kBwdBlockK);
  return acc * static_cast<size_t>(2 * kBwdBlockQ * kBwdBlockK + rows * (p.fwd.E + p.fwd.Ev));
}

void backward_kv(const BwdParams& p, int64_t b, int64_t e, void* s) { dispatch<KvPass>(p.fwd.dtype, p, b, e, s); }
void backward_q(const BwdParams& p, int64_t b, int64_t e, void* s) { dispatch<QPass>(p.fwd.dtype, p, b, e, s); }

}  // namespace flash_attn_ext::cpu
