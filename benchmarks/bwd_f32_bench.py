"""float32 forward + backward: bwd_mma's float32 kernels (3xTF32 for float32_precision="auto", TF32 for "tf32")
against the dense float32 backward they replace (FLASH_ATTN_EXT_BWD_F32=dense: same forward, O(L*S) backward)
and SDPA's efficient backend on float32. E = 128, H = 16, B * N = 16k, N in {1024, 4096}, causal off/on.
TFLOP/s count forward + backward as 3.5 x 4 * B * H * N * N * E (halved when causal). Medians of
triton.testing.do_bench after a warm-up; peak memory = torch.cuda.max_memory_allocated during one
forward + backward above what the inputs and dout hold.

    python3 benchmarks/bwd_f32_bench.py [--json FILE] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from triton.testing import do_bench

import flash_attn_ext as fae


def ours(precision, dense=False):
    def run(q, k, v, causal):
        if dense:
            os.environ["FLASH_ATTN_EXT_BWD_F32"] = "dense"
        else:
            os.environ.pop("FLASH_ATTN_EXT_BWD_F32", None)
        return fae.flash_attention(q, k, v, causal=causal, float32_precision=precision)

    return run


def sdpa_eff(q, k, v, causal):
    with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


PROVIDERS = {
    "auto (3xTF32)": ours("auto"),
    "tf32": ours("tf32"),
    "dense bwd (before, auto fwd)": ours("auto", dense=True),
    "dense bwd (before, tf32 fwd)": ours("tf32", dense=True),
    "sdpa efficient": sdpa_eff,
}


def measure(fn, B, H, N, E, causal):
    q, k, v = (torch.randn(B, H, N, E, device="cuda", requires_grad=True) for _ in range(3))
    dout = torch.randn(B, H, N, E, device="cuda")

    def step():
        q.grad = k.grad = v.grad = None
        fn(q, k, v, causal).backward(dout)

    step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    step()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    ms = do_bench(step, warmup=10, rep=60, return_mode="median")
    flops = 3.5 * 4 * B * H * N * N * E / (2 if causal else 1)
    return ms, flops / ms / 1e9, peak


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    E, H = 128, 16
    rows = []
    for N in [1024] if args.quick else [1024, 4096]:
        B = 16384 // N
        for causal in (False, True):
            for name, fn in PROVIDERS.items():
                try:
                    ms, tf, peak = measure(fn, B, H, N, E, causal)
                except torch.OutOfMemoryError:
                    ms, tf, peak = float("nan"), float("nan"), float("nan")
                torch.cuda.empty_cache()
                rows.append(dict(N=N, B=B, causal=causal, provider=name, ms=ms, tflops=tf, peak_mib=peak / 2**20))
                print(f"N={N:5d} causal={int(causal)} {name:30s} {ms:9.3f} ms {tf:7.1f} TFLOP/s "
                      f"peak {peak / 2**20:9.0f} MiB", flush=True)
    os.environ.pop("FLASH_ATTN_EXT_BWD_F32", None)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    print("\nfloat32 fwd+bwd, E=128, H=16, B*N=16k: ms (TFLOP/s) / peak MiB; ratios = ours / sdpa efficient")
    names = list(PROVIDERS)
    print("| N | causal | " + " | ".join(names) + " | auto/eff | tf32/eff | auto/dense |")
    print("|---" * (len(names) + 5) + "|")
    for N in sorted({r["N"] for r in rows}):
        for causal in (False, True):
            sel = {r["provider"]: r for r in rows if r["N"] == N and r["causal"] == causal}
            cells = [f"{sel[n]['ms']:.2f} ({sel[n]['tflops']:.0f}) / {sel[n]['peak_mib']:.0f}" for n in names]
            eff = sel["sdpa efficient"]["ms"]
            print(f"| {N} | {int(causal)} | " + " | ".join(cells) +
                  f" | {eff / sel['auto (3xTF32)']['ms']:.2f}x | {eff / sel['tf32']['ms']:.2f}x"
                  f" | {sel['dense bwd (before, auto fwd)']['ms'] / sel['auto (3xTF32)']['ms']:.2f}x faster |")


if __name__ == "__main__":
    main()
