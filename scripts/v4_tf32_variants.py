"""A/B of the float32 v4 kernel's loop forms, side by side (benchmarks/timing.py), with each one's error against
float64 (batch 0, first two heads): the four combinations of
FLASH_ATTN_EXT_V4_OVERLAP / FLASH_ATTN_EXT_V4_PINGPONG. B * N = 16k, H = 2048 / E.

    python3 scripts/v4_tf32_variants.py [--ns 4096] [--es 128 64]
"""
import argparse
import os
import sys

import torch

import flash_attn_ext as fae
from flash_attn_ext.reference import attention_reference

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
from timing import Budget, clock_for, measure  # noqa: E402

VARIANTS = {
    "overlap + pingpong": {"FLASH_ATTN_EXT_V4_OVERLAP": "1", "FLASH_ATTN_EXT_V4_PINGPONG": "1"},
    "overlap": {"FLASH_ATTN_EXT_V4_OVERLAP": "1", "FLASH_ATTN_EXT_V4_PINGPONG": "0"},
    "pingpong": {"FLASH_ATTN_EXT_V4_OVERLAP": "0", "FLASH_ATTN_EXT_V4_PINGPONG": "1"},
    "neither": {"FLASH_ATTN_EXT_V4_OVERLAP": "0", "FLASH_ATTN_EXT_V4_PINGPONG": "0"},
}


def run_with(env, q, k, v, causal):
    def run():
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            return fae.flash_attention(q, k, v, causal=causal, kernel="v4_wgmma", float32_precision="tf32")
        finally:
            for key, val in saved.items():
                if val is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = val
    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ns", type=int, nargs="+", default=[4096])
    ap.add_argument("--es", type=int, nargs="+", default=[128, 64])
    args = ap.parse_args()
    clock, budget = clock_for(torch.device("cuda")), Budget.for_device("cuda")
    print("| E | N | causal | " + " | ".join(VARIANTS) + " |")
    print("|---|---|---|" + "---|" * len(VARIANTS))
    for E in args.es:
        for N in args.ns:
            for causal in (False, True):
                B, H = max(1, 16384 // N), 2048 // E
                gen = torch.Generator().manual_seed(0)
                q, k, v = (torch.randn(B, H, N, E, generator=gen).cuda() for _ in range(3))
                ref, _ = attention_reference(q[:1, :2], k[:1, :2], v[:1, :2], causal=causal)
                fns = {name: run_with(env, q, k, v, causal) for name, env in VARIANTS.items()}
                errs = {name: (fn()[:1, :2].double() - ref).abs().max().item() / ref.abs().max().item()
                        for name, fn in fns.items()}
                times = measure(fns, {n: 1.0 for n in fns}, clock, budget)
                flops = 4 * B * H * N * N * E / (2 if causal else 1)
                cells = [f"{flops / (times[n]['ms'] * 1e9):.1f} ({errs[n]:.1e})" for n in VARIANTS]
                print(f"| {E} | {N} | {'yes' if causal else 'no'} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
