"""Forward + backward where the CUDA-core backward bwd_simple runs: E = 256 bf16 and E = 64 float32 with
float32_precision="ieee" (H = 2048 / E, B * N = 16k, N in {1024, 4096}, non-causal), against the dense
float32 backward it replaces (FLASH_ATTN_EXT_BWD_SIMPLE=dense: same forward, O(L*S) backward) and SDPA's
efficient backend. TFLOP/s count forward + backward as 3.5 x 4 * B * H * N * N * E. Medians of CUDA-event
timings after a warm-up (few repetitions: these paths are slow); peak memory = torch.cuda.max_memory_allocated
during one forward + backward above what the inputs and dout hold. The table is printed last.

    python3 benchmarks/bwd_simple_bench.py [--json FILE] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import flash_attn_ext as fae


def ours(dense=False):
    def run(q, k, v):
        if dense:
            os.environ["FLASH_ATTN_EXT_BWD_SIMPLE"] = "dense"
        else:
            os.environ.pop("FLASH_ATTN_EXT_BWD_SIMPLE", None)
        return fae.flash_attention(q, k, v, float32_precision="ieee")

    return run


def sdpa_eff(q, k, v):
    with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
        return F.scaled_dot_product_attention(q, k, v)


PROVIDERS = {"bwd_simple": ours(), "dense bwd": ours(dense=True), "sdpa efficient": sdpa_eff}


def measure(fn, B, H, N, E, dtype, reps):
    q, k, v = (torch.randn(B, H, N, E, device="cuda", dtype=dtype, requires_grad=True) for _ in range(3))
    dout = torch.randn(B, H, N, E, device="cuda", dtype=dtype)

    def step():
        q.grad = k.grad = v.grad = None
        fn(q, k, v).backward(dout)

    step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    step()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        step()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    ms = statistics.median(times)
    return ms, 3.5 * 4 * B * H * N * N * E / ms / 1e9, peak


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rows = []
    configs = [(256, torch.bfloat16), (64, torch.float32)]
    for E, dtype in configs:
        H = 2048 // E
        for N in [1024] if args.quick else [1024, 4096]:
            B = 16384 // N
            for name, fn in PROVIDERS.items():
                try:
                    ms, tf, peak = measure(fn, B, H, N, E, dtype, reps=3 if N >= 4096 else 5)
                except (torch.OutOfMemoryError, RuntimeError) as e:  # SDPA may refuse a head dim
                    print(f"  {name}: {type(e).__name__}: {str(e)[:120]}")
                    ms, tf, peak = float("nan"), float("nan"), float("nan")
                torch.cuda.empty_cache()
                row = dict(E=E, dtype=str(dtype).split(".")[-1], N=N, B=B, H=H, provider=name, ms=ms, tflops=tf,
                           peak_mib=peak / 2**20)
                rows.append(row)
                print(f"E={E:3d} {row['dtype']:8s} N={N:5d} {name:15s} {ms:9.2f} ms {tf:7.2f} TFLOP/s "
                      f"peak {peak / 2**20:9.0f} MiB", flush=True)
    os.environ.pop("FLASH_ATTN_EXT_BWD_SIMPLE", None)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    print("\nfwd+bwd, H = 2048/E, B*N = 16k, non-causal: ms (TFLOP/s) / peak MiB; ratios: time of X / time of bwd_simple")
    names = list(PROVIDERS)
    print("| E | dtype | N | " + " | ".join(names) + " | dense/simple | eff/simple |")
    print("|---" * (len(names) + 5) + "|")
    for E, dtype in configs:
        for N in sorted({r["N"] for r in rows if r["E"] == E}):
            sel = {r["provider"]: r for r in rows if r["N"] == N and r["E"] == E}
            cells = [f"{sel[n]['ms']:.1f} ({sel[n]['tflops']:.1f}) / {sel[n]['peak_mib']:.0f}" for n in names]
            s = sel["bwd_simple"]["ms"]
            print(f"| {E} | {sel['bwd_simple']['dtype']} | {N} | " + " | ".join(cells) +
                  f" | {sel['dense bwd']['ms'] / s:.2f}x | {sel['sdpa efficient']['ms'] / s:.2f}x |")


if __name__ == "__main__":
    main()
