// GPU unit test of the TF32 wgmma wrappers (csrc/cuda/ptx/wgmma.cuh with T = float) and of float
// TMA maps of type TFLOAT32: one warpgroup computes C (64 x 64) = A (64 x 32) * B (64 x 32)^T with
// float32 operands loaded by TMA (128-byte swizzle: 32 floats per row), fp32 accumulators.
//   mode 0  SS, A and B K-major                       (the float32 v4 kernel's Q K^T)
//   mode 1  RS, A fragments read from the swizzled tile in the m64k8 TF32 layout
//           (row g, col t), (g + 8, t), (g, t + 4), (g + 8, t + 4), B K-major (its P V)
// The reference rounds A and B to TF32 (to nearest) and sums in double: TF32 products are exact in
// float32, so the error left is float32 accumulation (~1e-6, allowed 1e-4); a map or fragment mix-up is O(1), and
// truncated instead of rounded operands ~1e-3.
// Standalone (no torch): nvcc -std=c++17 -O2 -gencode=arch=compute_90a,code=sm_90a -I csrc
// scripts/ptx_tests/wgmma_tf32.cu -o wgmma_tf32 && ./wgmma_tf32   (exit 0 = all pass)
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cuda/ptx/fence.cuh"
#include "cuda/ptx/mbarrier.cuh"
#include "cuda/ptx/tma.cuh"
#include "cuda/ptx/tma_host.h"
#include "cuda/ptx/wgmma.cuh"
#include "cuda_check.h"

namespace ptx = flash_attn_ext::cuda::ptx;
namespace tma = flash_attn_ext::cuda::tma;

constexpr int M = 64, N = 64, K = 32;

struct Smem {
  alignas(1024) float a[M * K];  // 64 rows x 128 B, swizzled
  alignas(1024) float b[N * K];
  alignas(8) uint64_t bar;
};

// Byte offset of float (r, k) in a K-major 128B-swizzled tile of 32-float rows.
__device__ int swz(int r, int k) {
  const int byte = k * 4;
  return r * 128 + (((byte >> 4) ^ (r & 7)) << 4) + (byte & 15);
}

template <int MODE>
__global__ void __launch_bounds__(128, 1)
    gemm_tf32_kernel(const __grid_constant__ CUtensorMap ta, const __grid_constant__ CUtensorMap tb, float* c_out) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ unsigned char raw[];
  Smem& s = *reinterpret_cast<Smem*>((reinterpret_cast<uintptr_t>(raw) + 1023) & ~uintptr_t(1023));
  const int tid = threadIdx.x;
  if (tid == 0) {
    ptx::mbar_init(&s.bar, 1);
    ptx::fence_mbarrier_init();
  }
  __syncthreads();
  if (tid == 0) {
    const uint32_t bar = ptx::smem_addr(&s.bar);
    ptx::mbar_arrive_expect_tx(&s.bar, (M * K + N * K) * 4);
    ptx::tma_load_2d(ptx::smem_addr(s.a), &ta, bar, 0, 0);
    ptx::tma_load_2d(ptx::smem_addr(s.b), &tb, bar, 0, 0);
  }
  ptx::mbar_wait(&s.bar, 0);

  const int warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const uint32_t a_base = ptx::smem_addr(s.a), b_base = ptx::smem_addr(s.b);
  float acc[N / 2];
#pragma unroll
  for (int i = 0; i < N / 2; ++i) acc[i] = 0.f;
  uint32_t afrag[K / 8][4];
  if (MODE == 1) {
    const unsigned char* a_bytes = reinterpret_cast<const unsigned char*>(s.a);
    const int r0 = warp * 16 + g;
#pragma unroll
    for (int kk = 0; kk < K / 8; ++kk) {
      const int k0 = kk * 8 + t;
      afrag[kk][0] = *reinterpret_cast<const uint32_t*>(a_bytes + swz(r0, k0));
      afrag[kk][1] = *reinterpret_cast<const uint32_t*>(a_bytes + swz(r0 + 8, k0));
      afrag[kk][2] = *reinterpret_cast<const uint32_t*>(a_bytes + swz(r0, k0 + 4));
      afrag[kk][3] = *reinterpret_cast<const uint32_t*>(a_bytes + swz(r0 + 8, k0 + 4));
    }
  }
  ptx::wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < K / 8; ++kk) {  // a k8 step is 32 bytes of a 128-byte row, as a 16-bit k16 step
    const uint64_t db = ptx::desc_kmajor_sw128(b_base + kk * 32);
    if (MODE == 0) ptx::wgmma_ss<float, N, 0>(acc, ptx::desc_kmajor_sw128(a_base + kk * 32), db, kk > 0);
    if (MODE == 1) ptx::wgmma_rs<float, N, 0>(acc, afrag[kk], db, kk > 0);
  }
  ptx::wgmma_commit();
  ptx::wgmma_wait<0>();
  ptx::fence_operands(acc);
  const int r0 = warp * 16 + g;
#pragma unroll
  for (int j = 0; j < N / 8; ++j) {
    const int col = j * 8 + 2 * t;
    c_out[r0 * N + col] = acc[4 * j];
    c_out[r0 * N + col + 1] = acc[4 * j + 1];
    c_out[(r0 + 8) * N + col] = acc[4 * j + 2];
    c_out[(r0 + 8) * N + col + 1] = acc[4 * j + 3];
  }
#endif
}

// float to TF32, to nearest (ties away), as the TMA's TFLOAT32 type and cvt.rna do.
static float tf32(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u = (u + 0x1000u) & 0xffffe000u;
  std::memcpy(&x, &u, 4);
  return x;
}

int main() {
  std::vector<float> ha(M * K), hb(N * K);
  srand(4321);
  auto rnd = [] { return (rand() / (float)RAND_MAX) * 2.f - 1.f; };
  for (float& x : ha) x = rnd();
  for (float& x : hb) x = rnd();
  std::vector<double> ref(M * N), trunc_gap(M * N);
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      double acc = 0, exact = 0;
      for (int k = 0; k < K; ++k) {
        acc += (double)tf32(ha[m * K + k]) * tf32(hb[n * K + k]);
        exact += (double)ha[m * K + k] * hb[n * K + k];
      }
      ref[m * N + n] = acc;
      trunc_gap[m * N + n] = std::fabs(exact - acc);
    }
  float *da, *db, *dc;
  CK(cudaMalloc(&da, M * K * 4));
  CK(cudaMalloc(&db, N * K * 4));
  CK(cudaMalloc(&dc, M * N * 4));
  CK(cudaMemcpy(da, ha.data(), M * K * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(db, hb.data(), N * K * 4, cudaMemcpyHostToDevice));
  CUtensorMap ta, tb;
  const uint64_t dims[2] = {K, M}, str[1] = {K * 4};
  const uint32_t box[2] = {32, M};
  if (!tma::encode_tiled(&ta, CU_TENSOR_MAP_DATA_TYPE_TFLOAT32, 2, da, dims, str, box, CU_TENSOR_MAP_SWIZZLE_128B) ||
      !tma::encode_tiled(&tb, CU_TENSOR_MAP_DATA_TYPE_TFLOAT32, 2, db, dims, str, box, CU_TENSOR_MAP_SWIZZLE_128B)) {
    std::printf("FAIL: cuTensorMapEncodeTiled\n");
    return 1;
  }
  const int smem = sizeof(Smem) + 1024;
  const char* names[2] = {"SS tf32 m64n64k8", "RS tf32 m64n64k8"};
  int failures = 0;
  std::vector<float> hc(M * N);
  for (int mode = 0; mode < 2; ++mode) {
    CK(cudaMemset(dc, 0xFF, M * N * 4));  // NaN poison: every element must be written
    void (*kern)(CUtensorMap, CUtensorMap, float*) = mode == 0 ? gemm_tf32_kernel<0> : gemm_tf32_kernel<1>;
    CK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    kern<<<1, 128, smem>>>(ta, tb, dc);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(hc.data(), dc, M * N * 4, cudaMemcpyDeviceToHost));
    double err = 0, gap = 0;
    for (int i = 0; i < M * N; ++i) {
      err = std::isnan(hc[i]) ? INFINITY : std::max(err, std::fabs(hc[i] - ref[i]));
      gap = std::max(gap, trunc_gap[i]);
    }
    const bool pass = err < 1e-4;
    failures += !pass;
    std::printf("%-20s max err vs TF32-rounded reference %.3g (rounding the operands costs %.3g): %s\n", names[mode],
                err, gap, pass ? "PASS" : "FAIL");
  }
  std::printf("wgmma tf32 unit test: %d failing case(s)\n", failures);
  return failures == 0 ? 0 : 1;
}
