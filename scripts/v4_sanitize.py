"""A few small v4_wgmma calls (tails, causal both ways, GQA, E = 64, 128, 192 and 256; the last shapes give the
persistent kernel several work items per CTA when FLASH_ATTN_EXT_V4_CTAS caps its grid, some of them with
no visible key) for compute-sanitizer. At these sizes the default routing runs the persistent kernels only;
FLASH_ATTN_EXT_V4_PERSISTENT=0 puts every call on the one-item grid instead (S >= 2048 then reaches its wide
tiles, except E = 128 causal). E = 192 and 256 (one 128 x 112 or 128 x 80 tile each) get their own, shorter
list: key and query tails (257, 300: not multiples of 80, 112 or 128), both causal alignments, whole query blocks
that see no key, GQA. V4_SAN_E picks the head dims (comma-separated, 64,128,192,256 by default; others run
padded, those above 128 with the shorter list).

    compute-sanitizer --tool synccheck python scripts/v4_sanitize.py
    compute-sanitizer --tool memcheck python scripts/v4_sanitize.py --mask   # bool masks only

--mask runs the bool-mask path instead (pre-pass + masked kernel): tails on both axes, every
broadcast form, causal both ways, a key-padding mask (V rows zeroed in shared memory), fully
masked rows and query blocks with no visible tile; V4_SAN_MASK_E picks its head dims (64,128).
--tf32 runs the float32 kernels instead, each case in TF32 (float32_precision='tf32'), 3xTF32 ('3xtf32') and
3xF16 ('auto'): tails, both causal alignments, GQA, a single query row, rows that see no key, a negative scale,
and 3xF16 on a padded head dim (E / 2 + 4, views whose rows end past it).
"""
import os
import sys
import time

import torch

import flash_attn_ext as fa

CASES = ((2, 300, 257, False), (2, 300, 257, "top_left"), (2, 257, 300, "bottom_right"),
         (2, 128, 512, True), (2, 300, 2100, False), (2, 300, 2100, "bottom_right"),
         (8, 640, 640, False), (8, 640, 640, True), (4, 1000, 300, "bottom_right"))
CASES_256 = ((2, 300, 257, False), (2, 300, 257, "top_left"), (2, 257, 300, "bottom_right"),
             (2, 200, 330, True), (4, 1000, 300, "bottom_right"))

torch.manual_seed(0)
start = time.time()
if "--tf32" in sys.argv:
    for E, L, S, H, Hkv, causal in ((128, 257, 300, 4, 2, "top_left"), (128, 300, 130, 2, 2, "bottom_right"),
                                    (64, 130, 200, 4, 1, False), (64, 97, 65, 2, 2, True), (128, 1, 70, 2, 2, False)):
        q = torch.randn(1, H, L, E, device="cuda")
        k, v = torch.randn(1, Hkv, S, E, device="cuda"), torch.randn(1, Hkv, S, E, device="cuda")
        for precision in ("tf32", "3xtf32", "auto"):
            fa.flash_attention(q, k, v, causal=causal, return_lse=True, kernel="v4_wgmma", float32_precision=precision)
        for precision in ("3xtf32", "auto"):
            fa.flash_attention(q, k, v, scale=-0.1, causal=causal, kernel="v4_wgmma", float32_precision=precision)
        pad = E // 2 + 4  # a padded head dim (3xF16 only): loads that stop at E
        fa.flash_attention(q[..., :pad], k[..., :pad], v[..., :pad], causal=causal, kernel="v4_wgmma")
elif "--mask" in sys.argv:
    for E in (int(e) for e in os.environ.get("V4_SAN_MASK_E", "64,128").split(",")):
        for H, L, S, causal in ((2, 300, 257, False), (2, 300, 257, "top_left"), (2, 257, 300, "bottom_right"),
                                (2, 129, 700, False), (4, 1000, 300, "bottom_right")):
            q = torch.randn(2, H, L, E, device="cuda", dtype=torch.bfloat16)
            k, v = (torch.randn(2, H // 2, S, E, device="cuda", dtype=torch.bfloat16) for _ in range(2))
            for shape in ((L, S), (2, 1, L, S), (1, H, L, S), (2, H, L, S), (2, 1, 1, S)):
                mask = torch.rand(shape, device="cuda") < 0.5
                if len(shape) == 4 and shape[2] > 1:
                    mask[..., :128, 128:256] = False  # a tile nobody sees
                    mask[..., 3, :] = False  # a fully masked row
                if shape == (2, 1, 1, S):
                    mask[0, ..., S // 2:] = False  # key padding: hidden keys, zeroed V rows
                fa.flash_attention(q, k, v, mask=mask, causal=causal, kernel="v4_wgmma")
            fa.flash_attention(q, k, v, mask=mask, causal=causal, scale=-0.2, kernel="v4_wgmma")
else:
    for E in (int(e) for e in os.environ.get("V4_SAN_E", "64,128,192,256").split(",")):
        for H, L, S, causal in CASES_256 if E > 128 else CASES:
            q = torch.randn(1, H, L, E, device="cuda", dtype=torch.bfloat16)
            k, v = (torch.randn(1, H // 2, S, E, device="cuda", dtype=torch.bfloat16) for _ in range(2))
            fa.flash_attention(q, k, v, causal=causal, kernel="v4_wgmma")
            if L == 300:  # a negative scale: the consumers flip Q's sign in shared memory first
                fa.flash_attention(q, k, v, scale=-0.2, causal=causal, kernel="v4_wgmma")
torch.cuda.synchronize()
print(f"v4_sanitize: done in {time.time() - start:.1f} s")
