"""v3_mma against SDPA's FlashAttention-2 backend, side by side (triton do_bench medians), bf16, B * N = 16k,
H = 2048 / E, E in {64, 128}, N in {1024, 4096, 16384} by default, causal off/on; prints one table row per point.

    python3 scripts/v3_vs_flash.py [--label NAME] [--head-dims 64,128] [--ns 1024,4096,16384]
"""
import argparse
import itertools

import torch
import torch.nn.functional as F
import triton.testing as tt
from torch.nn.attention import SDPBackend, sdpa_kernel

import flash_attn_ext as fa


def ms(fn):
    return tt.do_bench(fn, warmup=25, rep=100, return_mode="median")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", default="v3")
    ap.add_argument("--head-dims", default="64,128")
    ap.add_argument("--ns", default="1024,4096,16384")
    args = ap.parse_args()
    head_dims = [int(e) for e in args.head_dims.split(",")]
    ns = [int(n) for n in args.ns.split(",")]
    print(f"| E | N | causal | {args.label} | SDPA flash | ratio |")
    print("|---|---|---|---|---|---|")
    for E, N, causal in itertools.product(head_dims, ns, (False, True)):
        B, H = 16384 // N, 2048 // E
        q, k, v = (torch.randn(B, H, N, E, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        flops = 4 * B * H * N * N * E / (2 if causal else 1)

        def flash():
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

        ours = flops / ms(lambda: fa.flash_attention(q, k, v, causal=causal, kernel="v3_mma")) / 1e9
        theirs = flops / ms(flash) / 1e9
        print(f"| {E} | {N} | {'yes' if causal else 'no'} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
