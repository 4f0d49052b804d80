// run_v4<T, E, CAUSAL>: builds the three tensor maps of one call and launches the kernel.
// Included by the explicit instantiations in csrc/cuda/instantiations/v4_*.cu.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "../../../common/params.h"
#include "../../ptx/tma_host.h"
#include "../causal_order.h"
#include "../env_switch.h"
#include "kernel.cuh"
#include "kernel_f32.cuh"
#include "kernel_xitem.cuh"

namespace flash_attn_ext::cuda::v4 {

// Heads per group in the causal work order (kernel.cuh, item_at; 0: the persistent kernel's pairs).
inline int head_group(const FwdParams& p, int64_t fallback) {
  return static_cast<int>(head_group_for(p.B * p.H, fallback));
}

// Fills the kernel arguments for tile shape C (everything but the tensor maps).
template <typename T, class C, bool CAUSAL>
void fill_args(const FwdParams& p, Args& a) {
  a = Args{};
  a.out = p.out;
  a.lse = p.lse;
  a.o_sb = p.o_sb;
  a.o_sh = p.o_sh;
  a.o_sl = p.o_sl;
  a.L = static_cast<int>(p.L);
  a.H = static_cast<int>(p.H);
  a.group = static_cast<int>(p.group);
  a.causal_offset = static_cast<int>(p.causal_offset);
  // The softmax needs c > 0 (softmax.cuh): a negative scale runs as |c| on -Q, which the consumers
  // negate in shared memory; a zero scale as c = 2^-100, with which exp2(c (s - m)) rounds to 1 for
  // every finite score, as with c = 0, while hidden keys stay -inf instead of -inf * 0 = NaN.
  a.negate_q = p.scale_log2 < 0.f ? 1 : 0;
  a.scale_log2 = p.scale_log2 == 0.f ? 0x1p-100f : std::fabs(p.scale_log2);
  a.num_m = static_cast<int>((p.L + C::kBlockM - 1) / C::kBlockM);
  a.num_items = static_cast<int>(static_cast<int64_t>(a.num_m) * p.B * p.H);
  // Keys no query can see are left outside the K/V maps: the TMA fills them with zeros, so
  // NaN/Inf stored there cannot reach the output through 0 * NaN.
  int64_t s_eff = p.S;
  if (CAUSAL) s_eff = std::min<int64_t>(p.S, p.L + p.causal_offset);
  a.S = static_cast<int>(std::max<int64_t>(s_eff, 0));
  a.head_group = head_group(p, heads_in_l2(std::max<int64_t>(s_eff, 1) * (p.E + p.Ev) * sizeof(T), p.group));
  // The maps span the tensors' own head dim p.E (<= C::E): the TMA fills the columns beyond it with zeros,
  // which add nothing to Q K^T and give O columns that are never stored (a.ev).
  a.ev = static_cast<int>(p.Ev);
  // Narrow last tiles (kernel.cuh, with_tail_width; only tiles with C::kTailStep > 0 take them):
  // FLASH_ATTN_EXT_V4_NARROW_TAIL=0 runs every tile whole, the A/B baseline.
  a.narrow_tail = env_flag("FLASH_ATTN_EXT_V4_NARROW_TAIL", true) ? 1 : 0;
  // The softmax without the row max after a row's first tile (kernel.cuh, softmax_after_qk; tiles with
  // C::kSkipMax), except E = 128 causal at S <= 1024, where items of one to eight tiles measured 1-4% slower
  // with it (NOTES_v4.md step 22). FLASH_ATTN_EXT_V4_SKIP_MAX=0 / =1 turns it off / on in the overlapped
  // loops (A/B runs; the unpipelined loop always takes it).
  a.skip_max = env_flag("FLASH_ATTN_EXT_V4_SKIP_MAX", !(CAUSAL && C::E == 128 && p.S <= 1024)) ? 1 : 0;
  // A consumer warpgroup skips the key tiles past its own rows' diagonal (causal), and all of them when its rows
  // lie past L (kernel.cuh, own_keys_end, pass_over_tiles; NOTES_v4.md step 23). FLASH_ATTN_EXT_V4_OWN_TILES=0
  // runs the block's tiles on every warpgroup, the A/B baseline.
  a.own_tiles = env_flag("FLASH_ATTN_EXT_V4_OWN_TILES", true) ? 1 : 0;
}

// Fills the kernel arguments and the Q/K/V maps for tile shape C (no V map where tv is nullptr: the
// float32 kernel reads V itself); false if a map cannot be encoded.
template <typename T, class C, bool CAUSAL>
bool prepare(const FwdParams& p, Args& a, CUtensorMap& tq, CUtensorMap& tk, CUtensorMap* tv) {
  fill_args<T, C, CAUSAL>(p, a);
  const int64_t s_map = std::max<int64_t>(a.S, 1);
  return tma::make_head_map<T>(&tq, p.q, p.E, p.L, p.H, p.B, p.q_sl, p.q_sh, p.q_sb, C::kBlockM) &&
         tma::make_head_map<T>(&tk, p.k, p.E, s_map, p.Hkv, p.B, p.k_sl, p.k_sh, p.k_sb, C::kBlockN) &&
         (tv == nullptr || tma::make_head_map<T>(tv, p.v, p.Ev, s_map, p.Hkv, p.B, p.v_sl, p.v_sh, p.v_sb, C::kBlockN));
}

// Launches kernel on `blocks` CTAs of C::kThreads with `smem` bytes of dynamic shared memory.
template <class C, class K, class... A>
void launch(K kernel, int64_t blocks, int smem, cudaStream_t stream, const A&... args) {
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  kernel<<<static_cast<unsigned>(blocks), C::kThreads, smem, stream>>>(args...);
}

// Builds the maps for tile shape C and launches the given consumer loop; false (nothing
// launched) if a tensor map cannot be encoded.
template <typename T, class C, bool CAUSAL, bool OVERLAP, bool PINGPONG>
bool run_cfg(const FwdParams& p, cudaStream_t stream) {
  Args a;
  CUtensorMap tq, tk, tv;
  if (!prepare<T, C, CAUSAL>(p, a, tq, tk, &tv)) return false;
  launch<C>(v4_fwd_kernel<T, C, CAUSAL, OVERLAP, PINGPONG>, a.num_items, C::kSmemBytes, stream, tq, tk, tv, a);
  return true;
}

// The persistent kernel (FLASH_ATTN_EXT_V4_PERSISTENT=1): min(items, SMs) CTAs, each looping
// over work items; up to E = 128 O leaves through a TMA store, so the output must meet the TMA's
// rules too (16-byte aligned base and strides); where it does not, the one-item kernel runs instead.
// FLASH_ATTN_EXT_V4_CTAS=n caps the grid (tests: many items per CTA on small problems).
// XITEM = true launches v4_fwd_persistent_xitem_kernel instead (kernel_xitem.cuh: one pipeline
// across items; always the overlapped loop with pingpong, so OVERLAP and PINGPONG must be true).
template <typename T, class C, bool CAUSAL, bool OVERLAP, bool PINGPONG, bool XITEM = false>
bool run_persistent(const FwdParams& p, cudaStream_t stream) {
  static_assert(!XITEM || (OVERLAP && PINGPONG), "v4: the cross-item chain is the overlapped loop with pingpong");
  auto ok16 = [](int64_t stride, int64_t n) { return n == 1 || stride % 8 == 0; };
  if (C::kStageO && (reinterpret_cast<uintptr_t>(p.out) % 16 != 0 || !ok16(p.o_sl, p.L) || !ok16(p.o_sh, p.H) ||
                     !ok16(p.o_sb, p.B)))
    return run_cfg<T, C, CAUSAL, OVERLAP, PINGPONG>(p, stream);
  Args a;
  CUtensorMap tq, tk, tv, to{};
  if (!prepare<T, C, CAUSAL>(p, a, tq, tk, &tv)) return false;
  if (C::kStageO && !tma::make_head_map<T>(&to, p.out, p.Ev, p.L, p.H, p.B, p.o_sl, p.o_sh, p.o_sb, 64))
    return run_cfg<T, C, CAUSAL, OVERLAP, PINGPONG>(p, stream);
  int dev = 0, sms = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  sms = static_cast<int>(std::min<int64_t>(env_int("FLASH_ATTN_EXT_V4_CTAS", sms), 1 << 20));
  const int grid = std::max(1, std::min(a.num_items, std::max(sms, 1) * C::kCtasPerSm));
  // Causal items run in pairs (kernel.cuh, cta_item) once every CTA gets two pairs or more; on fewer
  // items longest first over all heads.
  a.head_group = head_group(p, a.num_items < 4 * static_cast<int64_t>(grid) ? p.B * p.H : 0);
  if constexpr (XITEM)
    launch<C>(v4_fwd_persistent_xitem_kernel<T, C, CAUSAL>, grid, C::kPSmemBytes, stream, tq, tk, tv, to, a);
  else
    launch<C>(v4_fwd_persistent_kernel<T, C, CAUSAL, OVERLAP, PINGPONG>, grid, C::kPSmemBytes, stream, tq, tk, tv, to, a);
  return true;
}

// Returns false (nothing launched) if a tensor map cannot be encoded; the caller falls back.
// The choice below is what measured fastest per case on the H200 (benchmarks/NOTES_v4.md,
// device run 2, every path through it checked there with the whole correctness sweep):
// - the overlapped loop with pingpong, except E = 64 causal on the wide tile, where the plain
//   overlap is faster (419 vs 390 TFLOP/s at N = 16k; likely because ptxas, with the named
//   barriers in that loop, still lets wait_group 0 in ahead of 31 of the 66 exp2s of a step);
// - the wide tile once there are enough keys that its last, partly masked tile costs little:
//   128 x 176 for E = 128 (590 vs 571 at N = 16k, but 433 vs 450 at N = 1024), 192 x 128 with
//   three consumer warpgroups for E = 64 (464 vs 399 at N = 16k, 347 vs 322 at N = 1024),
//   except E = 64 causal at N = 1024 (209 vs 239).
// FLASH_ATTN_EXT_V4_SIMPLE=1 runs the unpipelined loop (no overlap, no pingpong) on the 128 x
// 128 tile instead: the A/B baseline for what the pipeline buys.
// The persistent kernel (NOTES_v4.md, step 4) runs where the keys are few (S <= 4096): there a
// one-item CTA spends a large share of its life loading Q and storing O, which the persistent
// kernel overlaps with the next item (H200, bf16, N = 512: 475 vs 373 TFLOP/s at E = 128, 339 vs
// 281 at E = 64; N = 1024: +6-15%). Its tiles are 128 x 128 (176-key tiles leave no room for its
// second Q buffer and O staging tile), which from S = 8192 on lose to the one-item kernel's wide
// tiles. Non-causal it beat the one-CTA kernel up to S = 4096 in session 4's grid (step 8, bf16 /
// fp16: E = 64 N = 2048 +4 / +6%, N = 4096 +2 / +4%), at E = 128 in its cross-item form
// (kernel_xitem.cuh: the next item's first Q K^T issued with the current item's last P V; N = 2048
// +6 / +4%, N = 4096 +4 / +2%), which measured even with the plain persistent kernel at S <= 1024
// and slower under causal. Causal it took over from S = 1024 to 4096 once its items ran in pairs
// (step 13, bf16: E = 128 N = 2048 493 vs 411, N = 4096 529 vs 497; E = 64 349 vs 321, 383 vs 370).
// E = 64 causal runs it on two CTAs per SM (128 x 64 tiles, 104 registers per consumer thread, the
// unpipelined loop without pingpong: the overlapped loop spills at that budget): four consumer warpgroups
// per SM hide the softmax's latency that two could not (step 15, bf16: N = 512 249 vs 226, 1024 318 vs
// 294, 2048 369 vs 351, 4096 399 vs 383; non-causal it lost 5-24%); FLASH_ATTN_EXT_V4_E64_2CTA=0 runs
// the one-CTA tile there instead.
// E = 64 without causal runs it at every S: its 192 x 128 tile is the one-item kernel's too, and since the
// descriptors advance by one add (step 18, which the persistent E = 64 kernel does not take) it led at S = 8192
// and 16k (session 10, device calls 9 and 10, bf16 and fp16: +3-8%; NOTES_v4.md step 19).
// FLASH_ATTN_EXT_V4_PERSISTENT=1 / =0 forces it on / off.
// FLASH_ATTN_EXT_V4_XITEM=1 / =0 forces the cross-item form on / off wherever the persistent kernel runs.
template <typename T, int E, bool CAUSAL>
bool run_v4_e64_e128(const FwdParams& p, cudaStream_t stream) {
  if (env_flag("FLASH_ATTN_EXT_V4_SIMPLE", false)) return run_cfg<T, Cfg<E, 128, 128>, CAUSAL, false, false>(p, stream);
  const bool use_persistent = env_flag("FLASH_ATTN_EXT_V4_PERSISTENT", p.S <= 4096 || (E == 64 && !CAUSAL));
  if constexpr (E == 64 && CAUSAL) {
    if (use_persistent && env_flag("FLASH_ATTN_EXT_V4_E64_2CTA", true))
      return run_persistent<T, Cfg<64, 128, 64, 2>, CAUSAL, false, false>(p, stream);
  }
  if (use_persistent) {
    using PC = std::conditional_t<E == 64 && !CAUSAL, Cfg<E, 192, 128>, Cfg<E, 128, 128>>;
    if (env_flag("FLASH_ATTN_EXT_V4_XITEM", E == 128 && !CAUSAL && p.S > 1024))
      return run_persistent<T, PC, CAUSAL, true, true, true>(p, stream);
    return run_persistent<T, PC, CAUSAL, true, true>(p, stream);
  }
  // The wide tiles from S = 2048 on, except E = 128 causal: there 128 x 176 wastes 12% on the diagonal at
  // N = 2048 (128 x 128: 6%) and measured 408 vs 436 TFLOP/s, even at 4096, ahead from 8192 on (NOTES_v4.md
  // step 11, session 6 call 5). FLASH_ATTN_EXT_V4_WIDE_FROM=n moves the threshold (A/B runs).
  const int64_t wide_from = env_int("FLASH_ATTN_EXT_V4_WIDE_FROM", E == 128 && CAUSAL ? 4096 : 2048);
  if constexpr (E == 64 && !CAUSAL) {
    return run_cfg<T, Cfg<E, 192, 128>, CAUSAL, true, true>(p, stream);
  } else {
    if (p.S >= wide_from) {
      if constexpr (E == 128) return run_cfg<T, Cfg<E, 128, 176>, CAUSAL, true, true>(p, stream);
      else return run_cfg<T, Cfg<E, 192, 128>, CAUSAL, true, false>(p, stream);
    }
    return run_cfg<T, Cfg<E, 128, 128>, CAUSAL, true, true>(p, stream);
  }
}

// E = 192 and 256: one tile each everywhere, Cfg<E, 128, kBlockN192 or kBlockN256> (128 x 112, 128 x 80;
// config.h says why). What follows was measured at E = 256; E = 192 (session 13) takes the same routing but
// for the persistent kernel up to S = 4096, where it beat the one-item grid by 2-5% in two runs of both dtypes
// (NOTES_v4.md step 20; at 8192 and 16k within +-3%, at 2048 either way by dtype).
// E = 256: Cfg<256, 128, kBlockN256>, with the
// overlapped loop and without pingpong (FlashAttention-3's choice at head dims > 128: with 4E = 1024
// matmul flops per exp2 the softmax hides under the warpgroup's own PV, and the turns only add waits;
// measured even or 2-4% ahead at N <= 1024 and 7% behind at 16k with them, NOTES_v4.md; with the
// persistent kernel 1-7% behind at N <= 4096). The persistent kernel (one Q buffer, O from registers:
// config.h) up to S = 2048, where it beat the one-item grid by 1-10% (NOTES_v4.md step 14; at 4096 it
// lost 1-6%); FLASH_ATTN_EXT_V4_PERSISTENT=1 / =0 forces it on / off. A/B switches:
// FLASH_ATTN_EXT_V4_PINGPONG=1 adds pingpong (one-item grid), FLASH_ATTN_EXT_V4_SIMPLE=1 runs the
// unpipelined loop on the same tile.
// Causal E = 256 at S <= 1024 runs the persistent kernel on 128 x 64 tiles (config.h, kBlockN256Short; step 24,
// bf16 / fp16: N = 512 +3 / +5%, 1024 +2 / +3%; without causal -5..+2%, so not there);
// FLASH_ATTN_EXT_V4_E256_SHORT_UPTO=n moves the limit (0: the 80-key tile everywhere, the A/B baseline).
template <typename T, int E, bool CAUSAL>
bool run_v4_wide(const FwdParams& p, cudaStream_t stream) {
  using C = Cfg<E, 128, E == 256 ? kBlockN256 : kBlockN192>;
  if (env_flag("FLASH_ATTN_EXT_V4_SIMPLE", false)) return run_cfg<T, C, CAUSAL, false, false>(p, stream);
  if (env_flag("FLASH_ATTN_EXT_V4_PINGPONG", false)) return run_cfg<T, C, CAUSAL, true, true>(p, stream);
  if (env_flag("FLASH_ATTN_EXT_V4_PERSISTENT", p.S <= (E == 192 ? 4096 : 2048))) {
    if constexpr (E == 256 && CAUSAL) {
      if (p.S <= env_int("FLASH_ATTN_EXT_V4_E256_SHORT_UPTO", 1024))
        return run_persistent<T, Cfg<256, 128, kBlockN256Short>, CAUSAL, true, false>(p, stream);
    }
    return run_persistent<T, C, CAUSAL, true, false>(p, stream);
  }
  return run_cfg<T, C, CAUSAL, true, false>(p, stream);
}

// float32 on TF32 tensor cores (kernel_f32.cuh): one tile, CfgF32<E, 128, 64>, in the one-CTA grid.
template <int E, bool CAUSAL, bool OVERLAP, bool PINGPONG>
bool run_f32_cfg(const FwdParams& p, cudaStream_t stream) {
  using C = CfgF32<E, 128, 64>;
  ArgsF32 a;
  CUtensorMap tq, tk;
  if (!prepare<float, C, CAUSAL>(p, a, tq, tk, nullptr)) return false;
  a.v = static_cast<const float*>(p.v);
  a.v_sb = p.v_sb;
  a.v_sh = p.v_sh;
  a.v_sl = p.v_sl;
  launch<C>(v4_fwd_f32_kernel<C, CAUSAL, OVERLAP, PINGPONG>, a.num_items, C::kSmemBytes, stream, tq, tk, a);
  return true;
}

// The loop form: the unpipelined loop without pingpong, which measured fastest or even (NOTES_v4.md,
// float32 step 3: E = 128 N = 4096 210 TFLOP/s vs 199 with overlap + pingpong, causal 191 vs 174;
// E = 64 within 5% either way). Where the 16-bit kernel's softmax is the bottleneck these hide it;
// here the tensor cores run TF32 at half the 16-bit rate and V's transpose feeds them, so the
// softmax matters less and the overlap's earlier demand for V costs more.
// FLASH_ATTN_EXT_V4_OVERLAP=1 / FLASH_ATTN_EXT_V4_PINGPONG=1 switch either on, for that A/B.
template <int E, bool CAUSAL>
bool run_v4_f32(const FwdParams& p, cudaStream_t stream) {
  const bool overlap = env_flag("FLASH_ATTN_EXT_V4_OVERLAP", false);
  const bool pingpong = env_flag("FLASH_ATTN_EXT_V4_PINGPONG", false);
  if (overlap) return pingpong ? run_f32_cfg<E, CAUSAL, true, true>(p, stream) : run_f32_cfg<E, CAUSAL, true, false>(p, stream);
  return pingpong ? run_f32_cfg<E, CAUSAL, false, true>(p, stream) : run_f32_cfg<E, CAUSAL, false, false>(p, stream);
}

template <typename T, int E, bool CAUSAL>
bool run_v4(const FwdParams& p, cudaStream_t stream) {
  static_assert(E == 64 || E == 128 || E == 192 || E == 256, "v4: E in {64, 128, 192, 256}");
  if constexpr (std::is_same<T, float>::value) {
    static_assert(E <= 128, "v4 f32: E in {64, 128}");
    return run_v4_f32<E, CAUSAL>(p, stream);
  } else if constexpr (E > 128) {
    return run_v4_wide<T, E, CAUSAL>(p, stream);
  } else {
    return run_v4_e64_e128<T, E, CAUSAL>(p, stream);
  }
}

}  // namespace flash_attn_ext::cuda::v4
