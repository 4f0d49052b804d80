"""First look at the Hopper backward (kernels/bwd_wgmma) on a GPU: for a few shapes it takes, the
gradients under FLASH_ATTN_EXT_BWD_VARIANT=wgmma against v5's (same forward, same inputs), as the
largest difference relative to max |v5|, and the explain() line that says which kernel ran.
Exit status 1 if any difference exceeds 2e-2 or any gradient is not finite (the tests then say more)."""
import os
import sys

import torch

import flash_attn_ext as fae

SHAPES = [
    # (B, H, Hkv, L, S, E, causal)
    (1, 2, 2, 64, 128, 64, False),
    (1, 2, 2, 64, 128, 128, False),
    (2, 4, 2, 97, 113, 64, False),
    (2, 4, 2, 113, 97, 128, True),
    (1, 4, 1, 300, 517, 64, "bottom_right"),
    (1, 2, 2, 517, 300, 128, "bottom_right"),
    (1, 2, 2, 1, 1, 64, True),
    (1, 8, 2, 1024, 1024, 128, True),
]


def grads(variant, q, k, v, dout, causal):
    os.environ["FLASH_ATTN_EXT_BWD_VARIANT"] = variant
    try:
        ins = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
        fae.flash_attention(*ins, causal=causal).backward(dout)
        torch.cuda.synchronize()
        return [t.grad.float() for t in ins]
    finally:
        del os.environ["FLASH_ATTN_EXT_BWD_VARIANT"]


bad = 0
for dtype in (torch.bfloat16, torch.float16):
    for B, H, Hkv, L, S, E, causal in SHAPES:
        g = torch.Generator(device="cuda").manual_seed(0)
        q = torch.randn(B, H, L, E, device="cuda", dtype=dtype, generator=g)
        k = torch.randn(B, Hkv, S, E, device="cuda", dtype=dtype, generator=g)
        v = torch.randn(B, Hkv, S, E, device="cuda", dtype=dtype, generator=g)
        dout = torch.randn(B, H, L, E, device="cuda", dtype=dtype, generator=g)
        os.environ["FLASH_ATTN_EXT_BWD_VARIANT"] = "wgmma"
        why = fae.explain(q, k, v, causal=causal)["backward_reason"]
        del os.environ["FLASH_ATTN_EXT_BWD_VARIANT"]
        ours, ref = grads("wgmma", q, k, v, dout, causal), grads("v5", q, k, v, dout, causal)
        errs = []
        for a, r in zip(ours, ref):
            rel = ((a - r).abs().max() / r.abs().max().clamp_min(1e-6)).item()
            errs.append(rel if torch.isfinite(a).all() else float("inf"))
        flag = "ok " if max(errs) <= 2e-2 else "BAD"
        bad += flag == "BAD"
        print(f"{flag} {str(dtype)[6:]:>8} B{B} H{H}/{Hkv} L{L} S{S} E{E} causal={causal}: rel diff dq {errs[0]:.2e} "
              f"dk {errs[1]:.2e} dv {errs[2]:.2e} | {'wgmma' if 'bwd_wgmma' in why else why}")
print("smoke:", "all ok" if bad == 0 else f"{bad} BAD")
sys.exit(1 if bad else 0)
