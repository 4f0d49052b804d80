// The O(L*S)-memory reference: scores for a whole head, then softmax, then P.V.
// Kept deliberately plain; it is the oracle the fast kernels are checked against
// and the "before" in the memory plot.
#include <cmath>
#include <limits>

#include "../common/numeric.h"
#include "kernels.h"

namespace flash_attn_ext::cpu {
namespace {

template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };

template <typename T> inline double load_d(const T* p) { return load_float(p); }
template <> inline double load_d<double>(const double* p) { return *p; }
template <typename T> inline void store_d(T* p, double v) { store_float(p, static_cast<float>(v)); }
template <> inline void store_d<double>(double* p, double v) { *p = v; }

template <typename T>
void naive_heads(const FwdParams& p, int64_t bh_begin, int64_t bh_end, void* scores_raw) {
  using Acc = typename AccOf<T>::type;
  const Acc kNegInf = -std::numeric_limits<Acc>::infinity();
  const Acc scale = static_cast<Acc>(p.scale_f64);
  Acc* scores_all = static_cast<Acc*>(scores_raw);
  for (int64_t bh = bh_begin; bh < bh_end; ++bh) {
    const int64_t b = bh / p.H, h = bh % p.H, hk = h / p.group;
    const T* q = static_cast<const T*>(p.q) + b * p.q_sb + h * p.q_sh;
    const T* k = static_cast<const T*>(p.k) + b * p.k_sb + hk * p.k_sh;
    const T* v = static_cast<const T*>(p.v) + b * p.v_sb + hk * p.v_sh;
    T* out = static_cast<T*>(p.out) + b * p.o_sb + h * p.o_sh;
    Acc* scores = scores_all + (bh - bh_begin) * p.L * p.S;

    // 1. Scores: scale * q.k + bias for every (i, j); masked pairs are -inf and never computed.
    for (int64_t i = 0; i < p.L; ++i) {
      const int64_t key_end = p.causal_key_end(i);
      for (int64_t j = 0; j < p.S; ++j) {
        Acc bias = 0;
        if (p.mask_kind != MaskKind::kNone)
          bias = static_cast<Acc>(mask_bias(p, b * p.m_sb + h * p.m_sh + i * p.m_sl + j * p.m_ss));
        if (j >= key_end || bias == kNegInf) {
          scores[i * p.S + j] = kNegInf;
          continue;
        }
        Acc dot = 0;
        for (int64_t e = 0; e < p.E; ++e)
          dot += static_cast<Acc>(load_d(q + i * p.q_sl + e)) * static_cast<Acc>(load_d(k + j * p.k_sl + e));
        scores[i * p.S + j] = scale * dot + bias;
      }
    }
    // 2. Softmax per row, 3. out = P.V / sum. Rows with no visible key give 0 and lse -inf.
    for (int64_t i = 0; i < p.L; ++i) {
      Acc* row = scores + i * p.S;
      Acc mx = kNegInf;
      for (int64_t j = 0; j < p.S; ++j) mx = row[j] > mx ? row[j] : mx;
      T* o = out + i * p.o_sl;
      float* lse = p.lse + (b * p.H + h) * p.L + i;
      if (mx == kNegInf) {
        for (int64_t e = 0; e < p.Ev; ++e) store_d(o + e, 0.0);
        *lse = -std::numeric_limits<float>::infinity();
        continue;
      }
      Acc sum = 0;
      for (int64_t j = 0; j < p.S; ++j) {
        row[j] = row[j] == kNegInf ? Acc(0) : std::exp(row[j] - mx);
        sum += row[j];
      }
      for (int64_t e = 0; e < p.Ev; ++e) {
        Acc acc = 0;
        for (int64_t j = 0; j < p.S; ++j)
          if (row[j] != 0) acc += row[j] * static_cast<Acc>(load_d(v + j * p.v_sl + e));
        store_d(o + e, static_cast<double>(acc / sum));
      }
      *lse = static_cast<float>(mx + std::log(sum));
    }
  }
}

}  // namespace

void naive_forward(const FwdParams& p, int64_t bh_begin, int64_t bh_end, void* scores) {
  switch (p.dtype) {
    case ScalarKind::kFloat32: return naive_heads<float>(p, bh_begin, bh_end, scores);
    case ScalarKind::kFloat16: return naive_heads<Half>(p, bh_begin, bh_end, scores);
    case ScalarKind::kBFloat16: return naive_heads<BFloat16>(p, bh_begin, bh_end, scores);
    case ScalarKind::kFloat64: return naive_heads<double>(p, bh_begin, bh_end, scores);
    default: return;
  }
}

}  // namespace flash_attn_ext::cpu
