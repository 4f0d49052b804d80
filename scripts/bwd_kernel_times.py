"""Where a forward + backward spends its GPU time, kernel by kernel, for ours and SDPA's flash backend
(torch.profiler, medians over a few steps after warm-up), plus what the backward's pre-pass cost before
it became a kernel: the ATen expression (dO.float() * O.float()).sum(-1) and the zeroed float32 dQ buffer.

    python3 scripts/bwd_kernel_times.py [--shapes E:N:causal,...]   default 64:1024:1,64:4096:1,128:1024:1
"""
import argparse
import statistics
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile

import flash_attn_ext as fae


def kernel_times(step, reps=5):
    """Median GPU microseconds per kernel name over reps calls of step()."""
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    per_kernel = defaultdict(list)
    for _ in range(reps):
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            step()
            torch.cuda.synchronize()
        totals = defaultdict(float)
        for ev in prof.events():
            if ev.device_type == torch.autograd.DeviceType.CUDA:
                totals[ev.name] += ev.device_time
        for name, us in totals.items():
            per_kernel[name].append(us)
    return {name: statistics.median(v) for name, v in per_kernel.items()}


def short(name, width=60):
    return name if len(name) <= width else name[: width - 3] + "..."


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="64:1024:1,64:4096:1,128:1024:1")
    args = ap.parse_args()
    for spec in args.shapes.split(","):
        E, N, causal = (int(x) for x in spec.split(":"))
        B, H = 16384 // N, 2048 // E
        q, k, v = (torch.randn(B, H, N, E, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        dout = torch.randn(B, H, N, E, device="cuda", dtype=torch.bfloat16)

        def run(fn):
            def step():
                q.grad = k.grad = v.grad = None
                fn().backward(dout)
            return step

        def flash():
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return F.scaled_dot_product_attention(q, k, v, is_causal=bool(causal))

        out = fae.flash_attention(q, k, v, causal=bool(causal)).detach()

        def aten_prepass():
            (dout.float() * out.float()).sum(-1)
            torch.zeros(B, H, N, E, device="cuda", dtype=torch.float32)

        print(f"== E={E} N={N} B={B} H={H} causal={bool(causal)}: GPU us per kernel (median of 5)")
        for label, step in (("ours", run(lambda: fae.flash_attention(q, k, v, causal=bool(causal)))),
                            ("sdpa_flash", run(flash)), ("old ATen pre-pass", aten_prepass)):
            times = kernel_times(step)
            print(f"  {label}: total {sum(times.values()):.0f} us")
            for name, us in sorted(times.items(), key=lambda kv: -kv[1]):
                print(f"    {us:8.1f}  {short(name)}")
        del q, k, v, dout, out
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
