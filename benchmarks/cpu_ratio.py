"""Side-by-side CPU timing of the flash kernel against torch SDPA and our naive kernel.

Each pair of providers runs interleaved in one process (A, B, A, B, ...) with the same thread count,
after warm-up; the result is the ratio of medians, which cancels most of the noise from other work
on the machine. Also reports the peak extra memory of one long forward (in a fresh subprocess).

    python3 benchmarks/cpu_ratio.py [--threads 2] [--reps 15]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # the in-place build
import flash_attn_ext as fa  # noqa: E402


def interleaved(a, b, reps, warmup=2):
    """Median times of a and b run alternately, and the median of the per-pair ratios time(b) / time(a):
    a burst of load from elsewhere slows both runs of a pair, so the pairwise ratio drifts less."""
    for _ in range(warmup):
        a()
        b()
    ta, tb = [], []
    for _ in range(reps):
        for t, fn in ((ta, a), (tb, b)):
            start = time.perf_counter()
            fn()
            t.append(time.perf_counter() - start)
    return statistics.median(ta), statistics.median(tb), statistics.median(y / x for x, y in zip(ta, tb))


def vs_sdpa(B, H, L, S, E, causal, dtype, reps):
    q, k, v = (torch.randn(B, H, n, E, dtype=dtype) for n in (L, S, S))
    ours, sdpa, pairwise = interleaved(
        lambda: fa.flash_attention(q, k, v, causal=causal, kernel="flash"),
        lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
        reps,
    )
    flops = 4 * B * H * L * S * E / (2 if causal else 1)
    print(
        f"B{B} H{H} L{L} S{S} E{E} {str(dtype)[6:]:8s} causal={causal!s:5s}  ours {ours * 1e3:8.2f} ms "
        f"({flops / ours / 1e9:6.1f} GFLOP/s)  sdpa {sdpa * 1e3:8.2f} ms  sdpa/ours: medians {sdpa / ours:5.2f}x, "
        f"pairwise {pairwise:5.2f}x",
        flush=True,
    )
    return pairwise


def vs_naive(L, E, reps):
    q, k, v = (torch.randn(1, 1, L, E) for _ in range(3))
    ours, naive, pairwise = interleaved(
        lambda: fa.flash_attention(q, k, v, kernel="flash"), lambda: fa.naive_attention(q, k, v), reps, warmup=1
    )
    print(
        f"L=S={L} E{E} one head  ours {ours * 1e3:8.2f} ms  naive {naive * 1e3:8.2f} ms  naive/ours: medians "
        f"{naive / ours:5.2f}x, pairwise {pairwise:5.2f}x"
    )
    return pairwise


def _status_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def peak_memory_child(L, E):
    small = torch.randn(1, 1, 256, E)
    fa.flash_attention(small, small, small, kernel="flash")  # load the code and the thread pool first
    q, k, v = (torch.randn(1, 1, L, E) for _ in range(3))
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident size
    fa.flash_attention(q, k, v, kernel="flash")
    print(f"{(_status_kib('VmHWM') - before) / 1024:.2f}")


def peak_memory(L, E):
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(L), str(E)], capture_output=True, text=True, check=True
    )
    extra_mib = float(out.stdout.strip().splitlines()[-1])
    result_mib = (L * E + L) * 4 / 2**20
    print(
        f"L=S={L} E{E} one head: peak RSS growth of one forward {extra_mib:.2f} MiB, of which out + lse "
        f"{result_mib:.2f} MiB; extra {extra_mib - result_mib:.2f} MiB (the (L, S) scores would be {L * L * 4 / 2**20:.0f} MiB)"
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--memory-child", nargs=2, type=int)
    ap.add_argument("--skip-naive", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        return peak_memory_child(*args.memory_child)
    print(f"threads {torch.get_num_threads()}, ISA {fa.build_info()['cpu_isa']}")
    torch.manual_seed(0)
    for causal in (False, True):
        vs_sdpa(1, 8, 2048, 2048, 64, causal, torch.float32, args.reps)
    if not args.skip_naive:
        vs_naive(4096, 64, max(3, args.reps // 3))
        peak_memory(16384, 64)


if __name__ == "__main__":
    main()
