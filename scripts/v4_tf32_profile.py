"""One float32 v4 call for Nsight Compute (E = 128, N = 4096, B = 4, H = 16, TF32), after a warm-up call:
    ncu -k regex:v4_fwd_f32 -s 1 -c 1 --section ... python3 scripts/v4_tf32_profile.py [E]"""
import sys

import torch

import flash_attn_ext as fae

E = int(sys.argv[1]) if len(sys.argv) > 1 else 128
q, k, v = (torch.randn(4, 2048 // E, 4096, E, device="cuda") for _ in range(3))
for _ in range(2):
    fae.flash_attention(q, k, v, kernel="v4_wgmma", float32_precision="tf32")
torch.cuda.synchronize()
