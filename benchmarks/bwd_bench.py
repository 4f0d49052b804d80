"""Forward + backward timings of the tensor-core CUDA backward against SDPA's flash and cuDNN backends.

DESIGN.md §5's grid: bf16, E in {64, 128}, H = 2048 / E, B * N = 16k, N in {1024, 4096, 16384} (--ns: any
list, e.g. the whole grid 512,1024,2048,4096,8192,16384), causal and not. TFLOP/s count forward + backward as 3.5 x the forward's 4 * B * H * N * N * E (halved
when causal), as FlashAttention-2 reports it. Medians of triton.testing.do_bench after a warm-up.
Also: our deterministic mode, and the backward's peak extra memory at B=1, H=16, N=16k, E=128.

--variants v4,v5,... times our forward + backward once per dK/dV kernel (FLASH_ATTN_EXT_BWD_VARIANT, read
at every call) beside SDPA's flash backend only, and prints each variant's ratio to the first.

    python3 benchmarks/bwd_bench.py [--json FILE] [--quick | --ns 512,1024,...] [--variants v4,v5,v5x2]
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


def ours(q, k, v, causal):
    return fae.flash_attention(q, k, v, causal=causal)


def sdpa(backend):
    def run(q, k, v, causal):
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    return run


def time_fwd_bwd(fn, q, k, v, causal, dout):
    def step():
        q.grad = k.grad = v.grad = None
        fn(q, k, v, causal).backward(dout)

    step()
    torch.cuda.synchronize()
    return do_bench(step, warmup=50, rep=200, return_mode="median")


def time_fwd(fn, q, k, v, causal):
    with torch.no_grad():
        return do_bench(lambda: fn(q, k, v, causal), warmup=25, rep=100, return_mode="median")


def peak_backward_bytes(fn, B, H, N, E):
    q, k, v = (torch.randn(B, H, N, E, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    dout = torch.randn(B, H, N, E, device="cuda", dtype=torch.bfloat16)
    out = fn(q, k, v, False)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out.backward(dout)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def variants_main(variants, Ns, json_path):
    """Our forward + backward under each dK/dV kernel variant, beside SDPA's flash backend."""
    rows = []
    for E in (64, 128):
        for N in Ns:
            for causal in (False, True):
                B, H = 16384 // N, 2048 // E
                q, k, v = (torch.randn(B, H, N, E, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                           for _ in range(3))
                dout = torch.randn(B, H, N, E, device="cuda", dtype=torch.bfloat16)
                flops = 3.5 * 4 * B * H * N * N * E / (2 if causal else 1)
                row = {"E": E, "N": N, "B": B, "H": H, "causal": causal}
                tf = time_fwd(ours, q, k, v, causal)
                for name in variants:
                    # Read by the launcher at every call, so it must be set while autograd runs the backward.
                    os.environ["FLASH_ATTN_EXT_BWD_VARIANT"] = name
                    try:
                        t = time_fwd_bwd(ours, q, k, v, causal, dout)
                        row[name], row[name + "_bwd_ms"] = flops / t / 1e9, t - tf
                    except Exception as e:  # a variant that fails at run time: recorded, the others still timed
                        row[name], row[name + "_err"] = None, str(e).splitlines()[0][:120]
                    finally:
                        del os.environ["FLASH_ATTN_EXT_BWD_VARIANT"]
                fn = sdpa(SDPBackend.FLASH_ATTENTION)
                t = time_fwd_bwd(fn, q, k, v, causal, dout)
                row["sdpa_flash"], row["sdpa_flash_bwd_ms"] = flops / t / 1e9, t - time_fwd(fn, q, k, v, causal)
                rows.append(row)
                del q, k, v, dout
                torch.cuda.empty_cache()
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"variants": variants, "rows": rows}, f, indent=1)
    print("fwd+bwd TFLOP/s per dK/dV kernel variant, bf16, B*N=16k, H=2048/E; bwd ms = fwd+bwd - fwd")
    base = variants[0]
    print(f"{'E':>4} {'N':>6} {'causal':>6} | " + " ".join(f"{n:>6}" for n in variants) + f" {'flash':>6} | "
          + " ".join(f"{n + '/' + base:>9}" for n in variants[1:]) + " | "
          + " ".join(f"{n + '/fl':>8}" for n in variants) + " | bwd ms " + " ".join(variants) + " flash")
    for r in rows:
        tfl = " ".join(f"{r[n]:6.0f}" if r.get(n) else "     -" for n in variants + ["sdpa_flash"])
        ratio = " ".join(f"{r[n] / r[base]:9.2f}" if r.get(n) and r.get(base) else "        -" for n in variants[1:])
        vs_flash = " ".join(f"{r[n] / r['sdpa_flash']:8.2f}" if r.get(n) and r.get("sdpa_flash") else "       -"
                            for n in variants)
        ms = " ".join(f"{r.get(n + '_bwd_ms', float('nan')):.3f}" for n in variants + ["sdpa_flash"])
        print(f"{r['E']:>4} {r['N']:>6} {str(r['causal']):>6} | {tfl} | {ratio} | {vs_flash} | {ms}")
    for r in rows:
        for n in variants:
            if n + "_err" in r:
                print(f"E={r['E']} N={r['N']} causal={r['causal']} {n}: {r[n + '_err']}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ns", help="comma-separated sequence lengths (default 1024,4096,16384)")
    ap.add_argument("--variants", help="comma-separated FLASH_ATTN_EXT_BWD_VARIANT values, e.g. v4,v5,v5x2")
    args = ap.parse_args()
    Ns = [4096] if args.quick else [int(n) for n in args.ns.split(",")] if args.ns else [1024, 4096, 16384]
    if args.variants:
        variants_main(args.variants.split(","), Ns, args.json)
        return
    impls = {"ours": ours, "sdpa_flash": sdpa(SDPBackend.FLASH_ATTENTION), "cudnn": sdpa(SDPBackend.CUDNN_ATTENTION)}
    rows = []
    for E in (64, 128):
        for N in Ns:
            for causal in (False, True):
                B, H = 16384 // N, 2048 // E
                q, k, v = (torch.randn(B, H, N, E, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                           for _ in range(3))
                dout = torch.randn(B, H, N, E, device="cuda", dtype=torch.bfloat16)
                flops = 3.5 * 4 * B * H * N * N * E / (2 if causal else 1)
                row = {"E": E, "N": N, "B": B, "H": H, "causal": causal}
                for name, fn in impls.items():
                    try:
                        t = time_fwd_bwd(fn, q, k, v, causal, dout)
                        tf = time_fwd(fn, q, k, v, causal)
                        row[name] = flops / t / 1e9
                        row[name + "_bwd_ms"] = t - tf
                    except Exception as e:  # a backend that refuses a shape: recorded, not fatal
                        row[name] = None
                        row[name + "_err"] = str(e).splitlines()[0][:120]
                torch.use_deterministic_algorithms(True)
                try:
                    t = time_fwd_bwd(ours, q, k, v, causal, dout)
                    row["ours_det"] = flops / t / 1e9
                finally:
                    torch.use_deterministic_algorithms(False)
                rows.append(row)
                del q, k, v, dout
                torch.cuda.empty_cache()
    mem = {}
    for name in ("ours", "sdpa_flash"):
        try:
            mem[name] = peak_backward_bytes(impls[name], 1, 16, 16384, 128)
        except Exception as e:
            mem[name] = str(e).splitlines()[0][:120]
        torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "peak_backward_bytes": mem}, f, indent=1)

    def fmt(x):
        return "  -  " if x is None else f"{x:5.0f}"

    print("fwd+bwd TFLOP/s, bf16, B*N=16k, H=2048/E (bwd ms = fwd+bwd - fwd)")
    print(f"{'E':>4} {'N':>6} {'causal':>6} | {'ours':>5} {'det':>5} {'flash':>5} {'cudnn':>5} | "
          f"{'ours/fl':>7} | {'bwd ms ours':>11} {'flash':>6}")
    for r in rows:
        ratio = r["ours"] / r["sdpa_flash"] if r.get("ours") and r.get("sdpa_flash") else None
        print(f"{r['E']:>4} {r['N']:>6} {str(r['causal']):>6} | {fmt(r.get('ours'))} {fmt(r.get('ours_det'))} "
              f"{fmt(r.get('sdpa_flash'))} {fmt(r.get('cudnn'))} | {('%.2f' % ratio) if ratio else '  -':>7} | "
              f"{r.get('ours_bwd_ms', float('nan')):11.3f} {r.get('sdpa_flash_bwd_ms', float('nan')):6.3f}")
    print("peak extra memory of the backward, B=1 H=16 N=16k E=128 bf16:",
          {k: (f"{v / 2**20:.1f} MiB" if isinstance(v, int) else v) for k, v in mem.items()})


if __name__ == "__main__":
    main()
