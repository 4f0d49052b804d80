"""Median run time of several providers on one input, measured side by side.

Providers take turns call by call (round-robin, in a rotating order), so a slow drift of the machine
(clock, other load: this matters on a shared CPU) hits all of them alike and their ratios stay honest.
CPU: time.perf_counter around each call. CUDA: a pair of CUDA events around each call, with the L2 cache
flushed before it so no provider reads inputs the previous call left in cache.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Callable, Dict, List

import torch


@dataclasses.dataclass
class Budget:
    seconds: float  # timed calls per provider stop once this much time is spent (after min_reps)
    min_reps: int
    max_reps: int
    warmup: int  # calls after the first (checking) one, the last timed to size the run; 0: size it from the first

    @staticmethod
    def for_device(device: str, seconds=None) -> "Budget":
        if device == "cuda":
            return Budget(0.25 if seconds is None else seconds, 10, 200, 5)
        return Budget(1.0 if seconds is None else seconds, 3, 25, 0)


class CpuClock:
    def start(self, fn: Callable):
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3

    def resolve(self, handle) -> float:
        return handle

    def sync(self):
        pass


class CudaClock:
    L2_FLUSH_BYTES = 256 << 20  # well above the H200's 60 MB of L2

    def __init__(self, device):
        self.flush = torch.empty(self.L2_FLUSH_BYTES, dtype=torch.int8, device=device)

    def start(self, fn: Callable):
        self.flush.zero_()
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        fn()
        end.record()
        return begin, end

    def resolve(self, handle) -> float:
        begin, end = handle
        return begin.elapsed_time(end)

    def sync(self):
        torch.cuda.synchronize()


def clock_for(device: torch.device):
    return CudaClock(device) if device.type == "cuda" else CpuClock()


def _estimate_ms(clock, fn: Callable, warmup: int) -> float:
    for _ in range(warmup - 1):
        fn()
    clock.sync()
    t0 = time.perf_counter()
    fn()
    clock.sync()
    return (time.perf_counter() - t0) * 1e3


def measure(fns: Dict[str, Callable], first_ms: Dict[str, float], clock, budget: Budget) -> Dict[str, dict]:
    """{name: {"ms": median, "ms_min", "ms_p20", "ms_p80", "reps"}} for callables that have run once already,
    taking first_ms[name] milliseconds (wall clock, synchronised)."""
    est = {name: _estimate_ms(clock, fn, budget.warmup) if budget.warmup else first_ms[name]
           for name, fn in fns.items()}
    reps = {name: int(min(budget.max_reps, max(budget.min_reps, budget.seconds * 1e3 / max(ms, 1e-3))))
            for name, ms in est.items()}
    handles: Dict[str, List] = {name: [] for name in fns}
    names = list(fns)
    for r in range(max(reps.values(), default=0)):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            if len(handles[name]) < reps[name]:
                handles[name].append(clock.start(fns[name]))
    clock.sync()
    results = {}
    for name, hs in handles.items():
        times = sorted(clock.resolve(h) for h in hs)
        results[name] = {
            "ms": statistics.median(times),
            "ms_min": times[0],
            "ms_p20": times[int(0.2 * (len(times) - 1))],
            "ms_p80": times[int(0.8 * (len(times) - 1))],
            "reps": len(times),
        }
    return results
