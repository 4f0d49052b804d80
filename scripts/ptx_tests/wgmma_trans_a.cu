// GPU unit test of the two wgmma forms only the Hopper backward uses (kernels/bwd_wgmma, dQ = dS K):
// SS with A read MN-major (imm-trans-a = 1) and B MN-major, and N = 32 slices of a 64-wide
// swizzled B chunk whose descriptor starts 0 or 64 bytes into the 128-byte rows.
// C (64 x N) = At^T * Bt[:, cols], At (K = 64, M = 64) and Bt (K = 64, 64) row-major bf16, loaded by
// TMA with 128-byte swizzle (as the kernel's dS^T and K tiles). One warpgroup, float results.
// Standalone (no torch): nvcc -std=c++17 -O2 -gencode=arch=compute_90a,code=sm_90a -I csrc
// scripts/ptx_tests/wgmma_trans_a.cu -o wgmma_trans_a && ./wgmma_trans_a   (exit 0 = all pass)
#include <cuda_bf16.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cuda/ptx/fence.cuh"
#include "cuda/ptx/mbarrier.cuh"
#include "cuda/ptx/tma.cuh"
#include "cuda/ptx/tma_host.h"
#include "cuda/ptx/wgmma.cuh"
#include "cuda_check.h"

namespace ptx = flash_attn_ext::cuda::ptx;
namespace tma = flash_attn_ext::cuda::tma;

constexpr int M = 64, K = 64, NB = 64;

struct Smem {
  alignas(1024) __nv_bfloat16 at[K * M];  // K rows x 128 B, swizzled: A MN-major
  alignas(1024) __nv_bfloat16 bt[K * NB];  // K rows x 128 B, swizzled: B MN-major
  alignas(8) uint64_t bar;
};

// N: 64 (whole chunk) or 32 (columns col0 .. col0 + 31, col0 = 0 or 32).
template <int N>
__global__ void __launch_bounds__(128, 1)
    trans_a_kernel(const __grid_constant__ CUtensorMap ta, const __grid_constant__ CUtensorMap tb, float* c_out,
                   int col0) {
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
    ptx::mbar_arrive_expect_tx(&s.bar, (K * M + K * NB) * 2);
    ptx::tma_load_2d(ptx::smem_addr(s.at), &ta, ptx::smem_addr(&s.bar), 0, 0);
    ptx::tma_load_2d(ptx::smem_addr(s.bt), &tb, ptx::smem_addr(&s.bar), 0, 0);
  }
  ptx::mbar_wait(&s.bar, 0);
  float acc[N / 2];
  ptx::wgmma_fence();
#pragma unroll
  for (int j = 0; j < K / 16; ++j) {
    const uint64_t da = ptx::make_desc_sw128(ptx::smem_addr(s.at) + j * 16 * 128, 64 * 128, 1024);
    const uint64_t db = ptx::make_desc_sw128(ptx::smem_addr(s.bt) + col0 * 2 + j * 16 * 128, 64 * 128, 1024);
    ptx::wgmma_ss<__nv_bfloat16, N, 1, 1>(acc, da, db, j > 0);
  }
  ptx::wgmma_commit();
  ptx::wgmma_wait<0>();
  ptx::fence_operands(acc);
  const int warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
#pragma unroll
  for (int i = 0; i < N / 2; ++i) {
    const int nb = i / 4, r = (i / 2) % 2, c = i % 2;
    c_out[(warp * 16 + g + 8 * r) * N + nb * 8 + 2 * t + c] = acc[i];
  }
#endif
}

static float bf(float x) { return __bfloat162float(__float2bfloat16(x)); }

int main() {
  std::vector<__nv_bfloat16> ha(K * M), hb(K * NB);
  std::vector<float> fa(K * M), fb(K * NB);
  srand(4321);
  auto rnd = [] { return (rand() / (float)RAND_MAX) * 2.f - 1.f; };
  for (int i = 0; i < K * M; ++i) fa[i] = bf(rnd()), ha[i] = __float2bfloat16(fa[i]);
  for (int i = 0; i < K * NB; ++i) fb[i] = bf(rnd()), hb[i] = __float2bfloat16(fb[i]);
  __nv_bfloat16 *da, *db;
  float* dc;
  CK(cudaMalloc(&da, ha.size() * 2));
  CK(cudaMalloc(&db, hb.size() * 2));
  CK(cudaMalloc(&dc, M * NB * 4));
  CK(cudaMemcpy(da, ha.data(), ha.size() * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(db, hb.data(), hb.size() * 2, cudaMemcpyHostToDevice));
  CUtensorMap ta, tb;
  const uint64_t dims[2] = {64, K}, str[1] = {64 * 2};
  const uint32_t box[2] = {64, K};
  if (!tma::encode_tiled(&ta, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, da, dims, str, box, CU_TENSOR_MAP_SWIZZLE_128B) ||
      !tma::encode_tiled(&tb, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, db, dims, str, box, CU_TENSOR_MAP_SWIZZLE_128B)) {
    std::printf("FAIL: cuTensorMapEncodeTiled\n");
    return 1;
  }
  const int smem = sizeof(Smem) + 1024;
  struct Case {
    const char* name;
    int n, col0;
  };
  const Case cases[] = {{"SS A MN-major, B MN-major, N=64", 64, 0},
                        {"SS A MN-major, B MN-major, N=32, cols 0..31", 32, 0},
                        {"SS A MN-major, B MN-major, N=32, cols 32..63 (start +64 B)", 32, 32}};
  int failures = 0;
  std::vector<float> hc(M * NB);
  for (const Case& c : cases) {
    CK(cudaMemset(dc, 0xFF, M * NB * 4));
    if (c.n == 64) {
      CK(cudaFuncSetAttribute(trans_a_kernel<64>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
      trans_a_kernel<64><<<1, 128, smem>>>(ta, tb, dc, c.col0);
    } else {
      CK(cudaFuncSetAttribute(trans_a_kernel<32>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
      trans_a_kernel<32><<<1, 128, smem>>>(ta, tb, dc, c.col0);
    }
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(hc.data(), dc, M * c.n * 4, cudaMemcpyDeviceToHost));
    double err = 0;
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < c.n; ++n) {
        double ref = 0;
        for (int k = 0; k < K; ++k) ref += (double)fa[k * M + m] * fb[k * NB + c.col0 + n];
        const double e = std::fabs(hc[m * c.n + n] - ref);
        err = std::isnan(hc[m * c.n + n]) ? INFINITY : std::fmax(err, e);
      }
    const bool pass = err < 1e-3;
    failures += !pass;
    std::printf("%s %s: max |err| %.3e\n", pass ? "PASS" : "FAIL", c.name, err);
  }
  return failures ? 1 : 0;
}
