"""Peak extra memory of one forward: the most memory held at once during the call, beyond the inputs.

The output (and the LSE) count as extra: a forward must allocate them. Everything else is workspace.

CUDA: torch's caching allocator keeps exact books, so in-process is reliable: reset the peak counter,
note what is allocated (the inputs), run one forward, read the peak.

CPU: there is no allocator to ask (our kernels take their scratch with new[], torch with malloc), so we
ask the kernel for the process's resident set. Each measurement runs in a fresh process that builds the
inputs, warms the provider up on a tiny input (thread pool, lazy init), records its resident set (RSS),
resets the kernel's high-water mark to it (writing 5 to /proc/self/clear_refs), runs one forward and reads
the high-water mark (VmHWM) back. glibc is told to serve every block of 64 KiB or more with mmap and give
it back on free, so nothing freed earlier is silently reused. Where clear_refs is not allowed, the lifetime
peak (ru_maxrss) is used and the result is marked as an upper bound.
"""
from __future__ import annotations

import dataclasses
import json
import os
import resource
import subprocess
import sys
from typing import Optional, Tuple

import torch

MIB = float(1 << 20)


def cuda_peak_extra(fn) -> float:
    """MiB allocated at peak during fn() beyond what was allocated before it."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    del out
    return (peak - before) / MIB


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_high_water_mark() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def method(device: str) -> str:
    """How peak extra memory is measured on this machine (recorded with the results)."""
    if device == "cuda":
        return "torch.cuda.max_memory_allocated() after reset_peak_memory_stats(), minus memory_allocated() before"
    if _reset_high_water_mark():
        return "fresh process: VmHWM after resetting it (clear_refs) to VmRSS, minus that VmRSS"
    return "fresh process: ru_maxrss minus VmRSS before the call (an upper bound: clear_refs is not allowed here)"


def _child(case_json: str, provider_name: str) -> dict:
    from cases import Case, make_inputs
    from providers import discover, run_checked

    case = Case(**json.loads(case_json))
    provider = next(p for p in discover("cpu") if p.name == provider_name)
    tiny = dataclasses.replace(case, B=1, H=case.hkv, L=min(case.L, 64), S=min(case.S, 64))
    _, why = run_checked(provider.call(*make_inputs(tiny, torch.device("cpu")), tiny.causal))
    if why:
        return {"status": why}
    fn = provider.call(*make_inputs(case, torch.device("cpu")), case.causal)
    rss_kib = _status_kib("VmRSS")
    exact = _reset_high_water_mark()
    out, why = run_checked(fn)
    if why:
        return {"status": why}
    peak_kib = _status_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del out
    return {"status": "ok", "peak_extra_mib": (peak_kib - rss_kib) / 1024.0}


def cpu_peak_extra(case, provider_name: str, timeout_s: float = 900) -> Tuple[Optional[float], Optional[str]]:
    """Runs one forward of provider on case in a fresh process; returns (MiB, None) or (None, why not)."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    cmd = [sys.executable, os.path.abspath(__file__), json.dumps(case.to_dict()), provider_name]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None, f"failed: timed out after {timeout_s:.0f} s"
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return None, f"failed: {tail[:160]}"
    result = json.loads(lines[-1])
    return result.get("peak_extra_mib"), None if result["status"] == "ok" else result["status"]


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1], sys.argv[2])))
