"""One v3_mma call and one SDPA flash (FlashAttention-2) call on the same inputs, for Nsight Compute:
    ncu -k regex:'v3|flash' --section ... python3 scripts/v3_profile.py [E] [N] [causal]
bf16, B * N = 16k, H = 2048 / E (the DESIGN.md grid), after a warm-up of each."""
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import flash_attn_ext as fae

E = int(sys.argv[1]) if len(sys.argv) > 1 else 128
N = int(sys.argv[2]) if len(sys.argv) > 2 else 4096
causal = len(sys.argv) > 3 and sys.argv[3] == "1"
q, k, v = (torch.randn(16384 // N, 2048 // E, N, E, device="cuda", dtype=torch.bfloat16) for _ in range(3))
for _ in range(2):
    fae.flash_attention(q, k, v, causal=causal, kernel="v3_mma")
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        F.scaled_dot_product_attention(q, k, v, is_causal=causal)
torch.cuda.synchronize()
