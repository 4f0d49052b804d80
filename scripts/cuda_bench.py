"""Times each CUDA rung next to torch SDPA's backends on DESIGN.md section 5's shapes (a small subset).

    python scripts/cuda_bench.py [--dtypes bfloat16 float32] [--head-dims 64 128] [--seqlens 1024 4096] [--out results.csv]

B*N = 16k tokens, hidden 2048 (H = 2048 / E), bfloat16 (or --dtypes), causal off and on. FLOPs = 4*B*H*N*N*E, halved for
causal. Each timing is the median of CUDA-event timed calls after a warm-up, over two alternating input
sets; slow providers get fewer calls (at least 3). Prints a TFLOP/s table last.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

import flash_attn_ext

try:
    from torch.nn.attention import SDPBackend, sdpa_kernel
except ImportError:  # older torch: no backend selection, SDPA columns stay empty
    SDPBackend = sdpa_kernel = None

TOKENS, HIDDEN = 16384, 2048


def sdpa_provider(backend) -> Callable:
    def run(q, k, v, causal):
        with sdpa_kernel([backend]):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return run


def ours_provider(name: str) -> Callable:
    def run(q, k, v, causal):
        return flash_attn_ext.flash_attention(q, k, v, causal=causal, kernel=name)
    return run


def providers(kernels: Optional[List[str]]) -> Dict[str, Callable]:
    out = {}
    for k in flash_attn_ext.kernels("cuda"):
        if k["name"] != "naive" and (not kernels or k["name"] in kernels):
            out[k["name"]] = ours_provider(k["name"])
    if sdpa_kernel is not None:
        for label, attr in (("sdpa_flash", "FLASH_ATTENTION"), ("sdpa_cudnn", "CUDNN_ATTENTION"),
                            ("sdpa_efficient", "EFFICIENT_ATTENTION")):
            if hasattr(SDPBackend, attr):
                out[label] = sdpa_provider(getattr(SDPBackend, attr))
    return out


def time_ms(fn: Callable, inputs, budget_s: float) -> float:
    fn(*inputs[0])  # warm-up: module load, autotuning, first-touch
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn(*inputs[1])
    end.record()
    end.synchronize()
    first = start.elapsed_time(end)
    reps = max(3, min(50, int(budget_s * 1000 / max(first, 1e-3))))
    times = []
    for r in range(reps):
        start.record()
        fn(*inputs[r % len(inputs)])
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--head-dims", nargs="+", type=int, default=[64, 128])
    ap.add_argument("--seqlens", nargs="+", type=int, default=[1024, 4096])
    ap.add_argument("--dtypes", nargs="+", default=["bfloat16"], choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--kernels", nargs="+", help="our kernels to time (default: every CUDA rung)")
    ap.add_argument("--budget", type=float, default=0.3, help="seconds of timed calls per provider and shape")
    ap.add_argument("--out", help="CSV file for the rows")
    args = ap.parse_args(argv)
    provs = providers(args.kernels)
    rows = []
    gen = torch.Generator(device="cuda").manual_seed(0)
    configs = [(dt, E, N) for dt in args.dtypes for E in args.head_dims for N in args.seqlens]
    for dt, E, N in configs:
        B, H = max(1, TOKENS // N), HIDDEN // E
        inputs = []
        for _ in range(2):
            q, k, v = (torch.randn(B, H, N, E, device="cuda", generator=gen).to(getattr(torch, dt)) for _ in range(3))
            inputs.append((q, k, v))
        for causal in (False, True):
            flops = 4.0 * B * H * N * N * E * (0.5 if causal else 1.0)
            for name, fn in provs.items():
                try:
                    ms = time_ms(fn, [(q, k, v, causal) for q, k, v in inputs], args.budget)
                    tflops = flops / ms / 1e9
                except RuntimeError as exc:  # e.g. an SDPA backend that does not take float32
                    ms, tflops = float("nan"), float("nan")
                    print(f"# {name} {dt} E={E} N={N} causal={causal}: {str(exc).splitlines()[0][:120]}", flush=True)
                rows.append(dict(dtype=dt, E=E, N=N, B=B, H=H, causal=causal, provider=name, ms=ms, tflops=tflops))
                print(f"# {dt} E={E} N={N} B={B} H={H} causal={int(causal)} {name}: {ms:.3f} ms {tflops:.1f} TFLOP/s",
                      flush=True)
        del inputs
    if args.out:
        with open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
            w.writeheader()
            w.writerows(rows)
    names = list(provs)
    print(f"\nforward TFLOP/s on {torch.cuda.get_device_name()} (B*N = {TOKENS}, hidden {HIDDEN})")
    print(f"{'dtype':>9} {'E':>4} {'N':>5} {'causal':>6} " + " ".join(f"{n:>14}" for n in names))
    for dt, E, N in configs:
        for causal in (False, True):
            vals = {r["provider"]: r["tflops"] for r in rows if (r["dtype"], r["E"], r["N"], r["causal"]) == (dt, E, N, causal)}
            print(f"{dt:>9} {E:>4} {N:>5} {int(causal):>6} " + " ".join(f"{vals.get(n, float('nan')):>14.1f}" for n in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
