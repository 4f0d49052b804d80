"""float32 forward on CUDA: our tensor-core paths against SDPA's efficient backend (the only SDPA backend that
takes float32), side by side: v3_mma and v4_wgmma (sm_90), each in its float32-accurate 3xTF32 mode and in TF32, and v4_wgmma's
float32-accurate 3xF16 kernel (float32_precision='auto').
B * N = 16k, H = 2048 / E (the DESIGN.md grid), causal off/on. Timing: benchmarks/timing.py (providers
interleaved call by call, L2 flushed before each call, medians). Error: max |out - ref| / max |ref| against
float64, over batch 0's first two heads (the float64 reference of every head would not fit at N = 16k).

    python3 benchmarks/f32_bench.py [--ns 1024 4096 16384] [--es 64 128] [--providers NAME ...] [--json FILE]
"""
from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import flash_attn_ext as fae
from flash_attn_ext.reference import attention_reference

from timing import Budget, clock_for, measure


def ours(kernel, precision):
    return lambda q, k, v, causal: fae.flash_attention(q, k, v, causal=causal, kernel=kernel,
                                                       float32_precision=precision)


def sdpa_efficient(q, k, v, causal):
    with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


PROVIDERS = {
    "v4 3xf16": ours("v4_wgmma", "auto"),
    "v4 3xtf32": ours("v4_wgmma", "3xtf32"),
    "v3 3xtf32": ours("v3_mma", "3xtf32"),
    "v3 tf32": ours("v3_mma", "tf32"),
    "v4 tf32": ours("v4_wgmma", "tf32"),
    "sdpa efficient": sdpa_efficient,
}


def point(E, N, causal, clock, budget, providers):
    B, H = max(1, 16384 // N), 2048 // E
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, H, N, E, generator=gen).cuda() for _ in range(3))
    ref, _ = attention_reference(q[:1, :2], k[:1, :2], v[:1, :2], causal=causal)
    amax = ref.abs().max().item()
    fns, first, errs = {}, {}, {}
    for name in providers:
        fn = PROVIDERS[name]
        run = (lambda fn=fn: fn(q, k, v, causal))
        torch.cuda.synchronize()
        out = run()
        torch.cuda.synchronize()
        errs[name] = (out[:1, :2].double() - ref).abs().max().item() / amax
        fns[name] = run
        first[name] = 1.0
    del ref
    times = measure(fns, first, clock, budget)
    flops = 4 * B * H * N * N * E / (2 if causal else 1)
    return {name: {"tflops": flops / (times[name]["ms"] * 1e9), "err": errs[name], "ms": times[name]["ms"]}
            for name in providers}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ns", type=int, nargs="+", default=[1024, 4096, 16384])
    ap.add_argument("--es", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--providers", nargs="+", choices=list(PROVIDERS), default=list(PROVIDERS),
                    help="a subset (the ratio columns need sdpa efficient)")
    ap.add_argument("--json")
    args = ap.parse_args()
    clock, budget = clock_for(torch.device("cuda")), Budget.for_device("cuda")
    rows = []
    for E in args.es:
        for N in args.ns:
            for causal in (False, True):
                rows.append({"E": E, "N": N, "causal": causal, "r": point(E, N, causal, clock, budget, args.providers)})
                torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    names = args.providers
    ratios = [n for n in ("v4 3xf16", "v4 3xtf32", "v4 tf32", "v3 3xtf32") if n in names and "sdpa efficient" in names]
    print("float32 forward, B*N = 16k, H = 2048/E: TFLOP/s (max|err|/max|ref| vs float64)")
    print("| E | N | causal | " + " | ".join(names + [f"{n} / eff" for n in ratios]) + " |")
    print("|---|---|---|" + "---|" * (len(names) + len(ratios)))
    for row in rows:
        r = row["r"]
        cells = [f"{r[n]['tflops']:.1f} ({r[n]['err']:.1e})" for n in names]
        cells += [f"{r[n]['tflops'] / r['sdpa efficient']['tflops']:.2f}" for n in ratios]
        print(f"| {row['E']} | {row['N']} | {'yes' if row['causal'] else 'no'} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
