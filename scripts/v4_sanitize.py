"""A few small v4_wgmma calls (tails, causal both ways, GQA, E = 64 and 128; S >= 2048 reaches
the wide tiles) for compute-sanitizer:

    compute-sanitizer --tool synccheck python scripts/v4_sanitize.py
"""
import torch

import flash_attn_ext as fa

torch.manual_seed(0)
for E in (64, 128):
    for L, S, causal in ((300, 257, False), (300, 257, "top_left"), (257, 300, "bottom_right"), (128, 512, True),
                         (300, 2100, False), (300, 2100, "bottom_right")):
        q = torch.randn(1, 2, L, E, device="cuda", dtype=torch.bfloat16)
        k, v = (torch.randn(1, 1, S, E, device="cuda", dtype=torch.bfloat16) for _ in range(2))
        fa.flash_attention(q, k, v, causal=causal, kernel="v4_wgmma")
torch.cuda.synchronize()
print("v4_sanitize: done")
