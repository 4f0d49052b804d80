// The one struct every forward kernel reads: pointers, sizes and strides of one call.
//
// Plain C++ (no torch headers) so CPU kernels, CUDA kernels and their explicit
// instantiations compile without the slow torch includes. All strides are in
// elements and 64-bit; the last dimension of q, k, v and out has unit stride
// (the host side guarantees it), so only the three outer strides are kept.
#pragma once

#include <cstdint>

// Lets CUDA kernels call the few inline helpers below; plain C++ compilers see nothing.
#if defined(__CUDACC__)
#define FLASH_ATTN_EXT_HOST_DEVICE __host__ __device__
#else
#define FLASH_ATTN_EXT_HOST_DEVICE
#endif

namespace flash_attn_ext {

enum class ScalarKind : int32_t { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2, kFloat64 = 3, kBool = 4 };

// Query i may see key j when j <= i + causal_offset (see causal_offset below).
enum class CausalMode : int32_t { kNone = 0, kTopLeft = 1, kBottomRight = 2 };

enum class MaskKind : int32_t { kNone = 0, kBool = 1, kFloat = 2 };

// How float32 inputs use tensor cores on CUDA: kAuto picks the accurate default
// (3xTF32 where a tensor-core kernel runs, IEEE otherwise); kIeee stays on CUDA cores;
// k3xTf32 splits each operand into big + small TF32 parts; kTf32 is one plain TF32 product.
enum class Float32Precision : int32_t { kAuto = 0, kIeee = 1, k3xTf32 = 2, kTf32 = 3 };

struct FwdParams {
  // q (B, H, L, E), k (B, Hkv, S, E), v (B, Hkv, S, Ev), out (B, H, L, Ev).
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;
  float* lse = nullptr;  // (B, H, L) contiguous, natural log; -inf for rows that see no key

  int64_t B = 0, H = 0, Hkv = 0, L = 0, S = 0, E = 0, Ev = 0;
  int64_t group = 1;  // H / Hkv: query head h reads kv head h / group

  int64_t q_sb = 0, q_sh = 0, q_sl = 0;
  int64_t k_sb = 0, k_sh = 0, k_sl = 0;
  int64_t v_sb = 0, v_sh = 0, v_sl = 0;
  int64_t o_sb = 0, o_sh = 0, o_sl = 0;

  // Mask broadcast to (B, H, L, S) through strides: a broadcast dim has stride 0,
  // so a (L, S) mask is read in place for every batch and head.
  const void* mask = nullptr;
  MaskKind mask_kind = MaskKind::kNone;
  ScalarKind mask_dtype = ScalarKind::kBool;
  int64_t m_sb = 0, m_sh = 0, m_sl = 0, m_ss = 0;

  ScalarKind dtype = ScalarKind::kFloat32;  // of q, k, v and out
  float scale = 1.0f;                       // multiplies q.k
  float scale_log2 = 1.0f;                  // scale * log2(e), for exp2-based softmax
  double scale_f64 = 1.0;                   // the exact scale for the float64 CPU path

  Float32Precision precision = Float32Precision::kAuto;  // float32 inputs only

  CausalMode causal = CausalMode::kNone;
  // 0 for top-left, S - L for bottom-right (may be negative when L > S).
  int64_t causal_offset = 0;

  // No output row or no key: the answer (zeros, lse -inf, zero gradients) needs no kernel.
  inline bool nothing_to_compute() const { return B * H * L == 0 || S == 0; }

  // Last key index (exclusive) query row i may see under the causal rule.
  FLASH_ATTN_EXT_HOST_DEVICE inline int64_t causal_key_end(int64_t i) const {
    if (causal == CausalMode::kNone) return S;
    int64_t end = i + causal_offset + 1;
    return end < 0 ? 0 : (end > S ? S : end);
  }
};

}  // namespace flash_attn_ext

namespace flash_attn_ext {

// The backward of one call: the forward's params (q, k, v, out, lse, mask, scale,
// causal, GQA) plus the incoming gradient and the gradients to write.
struct BwdParams {
  FwdParams fwd;  // fwd.out and fwd.lse point at the forward's saved results

  const void* dout = nullptr;  // (B, H, L, Ev), strides below, unit last stride
  int64_t do_sb = 0, do_sh = 0, do_sl = 0;

  // D_i = rowsum(dO_i * O_i) - dlse_i: the row term of dS = P * (dP - D). (B, H, L)
  // contiguous, in the accumulator type (double for float64 inputs, float otherwise).
  const void* delta = nullptr;

  // dq (B, H, L, E), dk (B, Hkv, S, E), dv (B, Hkv, S, Ev): contiguous, in the inputs' dtype.
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;

  // When the float mask needs a gradient: dS for every (b, h, i, j), (B, H, L, S) contiguous
  // in the accumulator type; the host sums it over the mask's broadcast dims. nullptr otherwise.
  void* dscores = nullptr;
};

}  // namespace flash_attn_ext
