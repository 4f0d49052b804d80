"""Side-by-side CPU timing of forward + backward: ours against torch SDPA, interleaved.

Each step is `attention(q, k, v).sum().backward()` with q, k, v requiring grad. The providers run
alternately (A, B, A, B, ...) after warm-up; the result is the median of the per-pair ratios
time(sdpa) / time(ours), which cancels most of the load from other work on the machine.

    python3 benchmarks/cpu_bwd_ratio.py [--threads 2] [--reps 11] [--repeats 2]
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # the in-place build
import flash_attn_ext as fa  # noqa: E402
from cpu_ratio import interleaved  # noqa: E402


def step(fn, q, k, v):
    def run():
        for t in (q, k, v):
            t.grad = None
        fn(q, k, v).sum().backward()

    return run


def vs_sdpa(B, H, L, S, E, causal, dtype, reps):
    q, k, v = (torch.randn(B, H, n, E, dtype=dtype, requires_grad=True) for n in (L, S, S))
    ours, sdpa, pairwise = interleaved(
        step(lambda a, b, c: fa.flash_attention(a, b, c, causal=causal), q, k, v),
        step(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=causal), q, k, v),
        reps,
    )
    flops = 3.5 * 4 * B * H * L * S * E / (2 if causal else 1)  # forward + backward (2.5x forward)
    print(
        f"fwd+bwd B{B} H{H} L{L} S{S} E{E} {str(dtype)[6:]:8s} causal={causal!s:5s}  ours {ours * 1e3:8.2f} ms "
        f"({flops / ours / 1e9:6.1f} GFLOP/s)  sdpa {sdpa * 1e3:8.2f} ms  sdpa/ours: pairwise {pairwise:5.2f}x",
        flush=True,
    )
    return pairwise


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--E", type=int, default=64)
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads {torch.get_num_threads()}, ISA {fa.build_info()['cpu_isa']}, load {os.getloadavg()[0]:.1f}")
    torch.manual_seed(0)
    for _ in range(args.repeats):
        for causal in (False, True):
            vs_sdpa(1, 8, 2048, 2048, args.E, causal, getattr(torch, args.dtype), args.reps)


if __name__ == "__main__":
    main()
