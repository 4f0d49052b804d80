"""One v4 forward for Nsight Compute, after a warm-up call: B * N = 16k, H = 2048 / E; float32 runs with
float32_precision='tf32' (the TF32 kernel, kernel_f32.cuh) unless PRECISION says otherwise ('3xtf32': kernel_f32x3.cuh).
    ncu -k regex:v4_fwd -s 1 -c 1 --section ... python3 scripts/v4_profile.py E N CAUSAL(0/1) [bfloat16|float16|float32]
        [PRECISION]"""
import sys

import torch

import flash_attn_ext as fae

E, N, causal = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
dtype = getattr(torch, sys.argv[4]) if len(sys.argv) > 4 else torch.bfloat16
precision = sys.argv[5] if len(sys.argv) > 5 else "tf32" if dtype == torch.float32 else "auto"
q, k, v = (torch.randn(16384 // N, 2048 // E, N, E, device="cuda", dtype=dtype) for _ in range(3))
for _ in range(2):
    fae.flash_attention(q, k, v, causal=causal, kernel="v4_wgmma", float32_precision=precision)
torch.cuda.synchronize()
