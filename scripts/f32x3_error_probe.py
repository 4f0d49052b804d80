"""Where the float32-accurate kernels' error comes from, by input pattern and length: max |out - ref| / max |ref|
against float64 (computed on the GPU) for v4_wgmma and v3_mma in 3xTF32 and SDPA's efficient backend, on
random inputs, on V = 1 (the output is exactly 1: only the scores, P and the row sums can err), and on Q = 0 (every
score 0, P = 1: only the P V accumulation can err).

    python3 scripts/f32x3_error_probe.py [--ns 1024 4096 16384] [--es 64 128]
"""
import argparse

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import flash_attn_ext as fae


def ref64(q, k, v, causal):
    return F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=causal)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ns", type=int, nargs="+", default=[1024, 4096, 16384])
    ap.add_argument("--es", type=int, nargs="+", default=[128])
    args = ap.parse_args()
    gen = torch.Generator(device="cuda").manual_seed(0)
    runs = {
        "v4 3xf16": lambda q, k, v, c: fae.flash_attention(q, k, v, causal=c, kernel="v4_wgmma",
                                                            float32_precision="auto"),
        "v4 3xtf32": lambda q, k, v, c: fae.flash_attention(q, k, v, causal=c, kernel="v4_wgmma",
                                                             float32_precision="3xtf32"),
        "v3 3xtf32": lambda q, k, v, c: fae.flash_attention(q, k, v, causal=c, kernel="v3_mma",
                                                             float32_precision="3xtf32"),
    }

    def sdpa(q, k, v, c):
        with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v, is_causal=c)

    runs["sdpa efficient"] = sdpa
    print("| E | N | causal | inputs | " + " | ".join(runs) + " |")
    print("|---|---|---|---|" + "---|" * len(runs))
    for E in args.es:
        for N in args.ns:
            for causal in (False, True):
                for pattern in ("random", "V = 1", "Q = 0"):
                    q, k, v = (torch.randn(1, 2, N, E, device="cuda", generator=gen) for _ in range(3))
                    if pattern == "V = 1":
                        v = torch.ones_like(v)
                    if pattern == "Q = 0":
                        q = torch.zeros_like(q)
                    ref = ref64(q, k, v, causal)
                    amax = ref.abs().max().item()
                    errs = [(fn(q, k, v, causal).double() - ref).abs().max().item() / amax for fn in runs.values()]
                    print(f"| {E} | {N} | {causal} | {pattern} | " + " | ".join(f"{e:.1e}" for e in errs) + " |")
                    del ref


if __name__ == "__main__":
    main()
