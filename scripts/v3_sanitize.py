"""A few small, tail-heavy v3_mma calls for compute-sanitizer, each with 16 and 32 query rows per warp
(FLASH_ATTN_EXT_V3_ROWS): query blocks cut by L, causal both ways with L != S, GQA, E != Ev, odd head
dims (bucket padding, element-wise copies), bool and float masks with fully masked rows.

    compute-sanitizer --tool memcheck python scripts/v3_sanitize.py
    compute-sanitizer --tool racecheck python scripts/v3_sanitize.py
"""
import os

import torch

import flash_attn_ext as fa

torch.manual_seed(0)
calls = 0
for rows in ("16", "32"):
    os.environ["FLASH_ATTN_EXT_V3_ROWS"] = rows
    for dt in (torch.bfloat16, torch.float16):
        for E, Ev, L, S, causal in ((64, 64, 300, 257, False), (128, 128, 257, 300, "top_left"),
                                    (128, 64, 300, 130, "bottom_right"), (40, 40, 97, 113, True),
                                    (96, 96, 130, 200, False), (32, 32, 33, 70, "bottom_right"),
                                    # the pipelined loop (E <= 64): an odd and an even run of plain tiles
                                    (64, 64, 200, 330, False), (32, 32, 300, 450, "top_left"),
                                    # one K and one V stage (E > 128): an odd number of key tiles, a tail
                                    (256, 256, 130, 193, "bottom_right"), (160, 160, 97, 130, False),
                                    (192, 192, 70, 97, True)):
            q = torch.randn(1, 4, L, E, device="cuda", dtype=dt)
            k = torch.randn(1, 2, S, E, device="cuda", dtype=dt)
            v = torch.randn(1, 2, S, Ev, device="cuda", dtype=dt)
            fa.flash_attention(q, k, v, causal=causal, return_lse=True, kernel="v3_mma")
            calls += 1
        q, k, v = (torch.randn(2, 2, 150, 64, device="cuda", dtype=dt) for _ in range(3))
        mb = torch.rand(150, 150, device="cuda") > 0.5
        mb[3] = False
        fa.flash_attention(q, k, v, mask=mb, causal="bottom_right", kernel="v3_mma")
        mf = torch.randn(2, 1, 150, 150, device="cuda").masked_fill(mb.logical_not(), float("-inf"))
        fa.flash_attention(q, k, v, mask=mf, return_lse=True, kernel="v3_mma")
        calls += 2
        q, k, v = (torch.randn(1, 2, 150, 256, device="cuda", dtype=dt) for _ in range(3))
        fa.flash_attention(q, k, v, mask=mb, causal=True, kernel="v3_mma")
        calls += 1
torch.cuda.synchronize()
print(f"v3_sanitize: {calls} calls done")
