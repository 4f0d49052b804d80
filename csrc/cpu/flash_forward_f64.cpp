// The tiled flash forward for float64 inputs: scalar, double accumulation.
//
// Each work item owns kCpuBlockQ query rows of one (batch, head) and streams
// K/V in tiles of kCpuBlockK keys, keeping a running max m, running sum l and an
// unnormalised output O per row: the L x S score matrix never exists.
// Causal tiles entirely above the diagonal are skipped. float64 is for checking
// gradients and references, so this path stays plain rather than fast.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "../common/numeric.h"
#include "flash_forward_vec.h"
#include "tile_sizes.h"

namespace flash_attn_ext::cpu {
namespace {

void flash_items(const FwdParams& p, int64_t w_begin, int64_t w_end, void* scratch) {
  using T = double;
  using Acc = double;
  const Acc kNegInf = -std::numeric_limits<Acc>::infinity();
  const int64_t Br = kCpuBlockQ, Bc = kCpuBlockK, E = p.E, Ev = p.Ev;
  const int64_t q_blocks = (p.L + Br - 1) / Br;
  Acc* q_tile = static_cast<Acc*>(scratch);  // (Br, E), pre-multiplied by scale
  Acc* s_tile = q_tile + Br * E;             // (Br, Bc)
  Acc* o_acc = s_tile + Br * Bc;             // (Br, Ev)
  Acc* m = o_acc + Br * Ev;                  // (Br)
  Acc* l = m + Br;                           // (Br)
  const Acc scale = static_cast<Acc>(p.scale_f64);

  for (int64_t w = w_begin; w < w_end; ++w) {
    const WorkItem item = work_item(p, w, q_blocks);
    const int64_t qb = item.qb, b = item.b, h = item.h, hk = h / p.group;
    const int64_t i0 = qb * Br, rows = std::min(Br, p.L - i0);
    const T* q = static_cast<const T*>(p.q) + b * p.q_sb + h * p.q_sh + i0 * p.q_sl;
    const T* k = static_cast<const T*>(p.k) + b * p.k_sb + hk * p.k_sh;
    const T* v = static_cast<const T*>(p.v) + b * p.v_sb + hk * p.v_sh;

    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t e = 0; e < E; ++e) q_tile[r * E + e] = q[r * p.q_sl + e] * scale;
      m[r] = kNegInf;
      l[r] = 0;
    }
    std::memset(o_acc, 0, sizeof(Acc) * rows * Ev);
    const int64_t key_end = p.causal_key_end(i0 + rows - 1);  // the last row sees the most keys

    for (int64_t j0 = 0; j0 < key_end; j0 += Bc) {
      const int64_t cols = std::min(Bc, key_end - j0);
      for (int64_t r = 0; r < rows; ++r) {
        // Step 1: scores of this row against the tile; hidden keys are -inf, never computed.
        const int64_t row_end = p.causal_key_end(i0 + r);
        Acc* srow = s_tile + r * Bc;
        Acc tile_max = kNegInf;
        for (int64_t c = 0; c < cols; ++c) {
          const int64_t j = j0 + c;
          Acc bias = 0;
          if (p.mask_kind != MaskKind::kNone)
            bias = static_cast<Acc>(mask_bias(p, b * p.m_sb + h * p.m_sh + (i0 + r) * p.m_sl + j * p.m_ss));
          if (j >= row_end || bias == kNegInf) {
            srow[c] = kNegInf;
            continue;
          }
          Acc dot = 0;
          for (int64_t e = 0; e < E; ++e) dot += q_tile[r * E + e] * k[j * p.k_sl + e];
          srow[c] = dot + bias;
          tile_max = srow[c] > tile_max ? srow[c] : tile_max;
        }
        // Step 2: new running max; a row that has seen nothing yet stays at -inf.
        const Acc m_new = tile_max > m[r] ? tile_max : m[r];
        if (m_new == kNegInf) continue;
        // Step 3: rescale what was accumulated under the old max.
        const Acc alpha = m[r] == kNegInf ? Acc(0) : std::exp(m[r] - m_new);
        Acc* orow = o_acc + r * Ev;
        if (alpha != Acc(1)) {
          for (int64_t e = 0; e < Ev; ++e) orow[e] *= alpha;
        }
        // Step 4: probabilities of this tile, their sum, and P.V; zero probabilities are skipped
        // so NaN/Inf in hidden V rows cannot leak.
        Acc sum = 0;
        for (int64_t c = 0; c < cols; ++c) {
          const Acc pc = srow[c] == kNegInf ? Acc(0) : std::exp(srow[c] - m_new);
          if (pc == Acc(0)) continue;
          sum += pc;
          const T* vrow = v + (j0 + c) * p.v_sl;
          for (int64_t e = 0; e < Ev; ++e) orow[e] += pc * vrow[e];
        }
        l[r] = l[r] * alpha + sum;
        m[r] = m_new;
      }
    }
    // Step 5: normalise once; rows that saw no key give 0 and lse = -inf.
    for (int64_t r = 0; r < rows; ++r) {
      T* orow = static_cast<T*>(p.out) + b * p.o_sb + h * p.o_sh + (i0 + r) * p.o_sl;
      float* lse = p.lse + (b * p.H + h) * p.L + i0 + r;
      if (l[r] == Acc(0)) {
        for (int64_t e = 0; e < Ev; ++e) orow[e] = 0.0;
        *lse = -std::numeric_limits<float>::infinity();
        continue;
      }
      const Acc inv = Acc(1) / l[r];
      for (int64_t e = 0; e < Ev; ++e) orow[e] = o_acc[r * Ev + e] * inv;
      *lse = static_cast<float>(m[r] + std::log(l[r]));
    }
  }
}

}  // namespace

size_t flash_forward_f64_scratch_bytes(const FwdParams& p) {
  return sizeof(double) * static_cast<size_t>(kCpuBlockQ * p.E + kCpuBlockQ * kCpuBlockK + kCpuBlockQ * p.Ev +
                                              2 * kCpuBlockQ);
}

void flash_forward_f64(const FwdParams& p, int64_t work_begin, int64_t work_end, void* scratch) {
  flash_items(p, work_begin, work_end, scratch);
}

}  // namespace flash_attn_ext::cpu
