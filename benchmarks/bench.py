"""Benchmark: our kernels vs torch SDPA, side by side, on the shapes of DESIGN.md section 5.

    python benchmarks/bench.py --quick              small set sized for the device here (the default)
    python benchmarks/bench.py --acceptance         exactly the README's figures (float32)
    python benchmarks/bench.py --grid --dtype bfloat16 --head-dims 64 128
    python benchmarks/bench.py --decode --mask --memory

Writes results.json, results.csv, time_vs_seqlen.png and memory_vs_seqlen.png to benchmarks/out/ (or --out),
then prints the tables last.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Dict, List, Optional

import torch
from tqdm import tqdm

import cases as cases_mod
import memory
import plots
import report
from providers import Provider, Unsupported, discover, import_library, run_checked
from timing import Budget, clock_for, measure

HERE = os.path.dirname(os.path.abspath(__file__))
GIB = float(1 << 30)


def parse_args(argv: List[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    presets = ap.add_argument_group("presets (combine freely; none given means --quick)")
    for name, what in (("quick", "a small set sized for this device, with a memory sweep"),
                       ("grid", "DESIGN.md 5: B*N = 16k, hidden 2048, E in {64,128,256}, N 512..16k, causal off/on"),
                       ("decode", "L = 1 against a KV cache, 32 query heads on 8 KV heads (GQA)"),
                       ("mask", "a dense (L, S) bool and float mask, random half kept"),
                       ("memory", "peak extra memory vs N"),
                       ("acceptance", "the README's figures: flash vs SDPA at 2048, vs naive at 4096, memory at 16k "
                                      "(fixed shapes: the overrides below do not apply)")):
        presets.add_argument(f"--{name}", action="store_true", help=what)
    ap.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    ap.add_argument("--dtype", nargs="+", choices=list(cases_mod.DTYPES),
                    help="default: bfloat16 on CUDA, float32 on CPU (acceptance is always float32)")
    ap.add_argument("--seqlens", nargs="+", type=int, help="override the preset's sequence lengths")
    ap.add_argument("--head-dims", nargs="+", type=int, help="override the preset's head dims")
    ap.add_argument("--providers", nargs="+", help="keep providers whose name contains one of these")
    ap.add_argument("--float32-precision", help="passed to our kernels for float32 inputs (default: the library's)")
    ap.add_argument("--seconds", type=float, help="timing budget per provider and shape (CPU 1.0, CUDA 0.25)")
    ap.add_argument("--max-call-seconds", type=float, default=None,
                    help="skip a provider where its throughput so far predicts a slower call (CPU default 60)")
    ap.add_argument("--out", default=os.path.join(HERE, "out"), help="output folder (default benchmarks/out)")
    ap.add_argument("--no-plots", action="store_true")
    return ap.parse_args(argv)


def memory_limit_bytes(device: torch.device) -> float:
    """What a provider that materialises the scores may use: half the free RAM, or 90% of free GPU memory."""
    if device.type == "cuda":
        return 0.9 * torch.cuda.mem_get_info(device)[0]
    with open("/proc/meminfo") as f:
        info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
    return 0.5 * info.get("MemAvailable", info["MemTotal"])


class Runner:
    def __init__(self, device: torch.device, providers: List[Provider], budget: Budget, max_call_s: Optional[float]):
        self.device, self.providers, self.budget, self.max_call_s = device, providers, budget, max_call_s
        self.clock = clock_for(device)
        self.flops_per_ms: Dict[str, float] = {}  # best throughput seen so far, per provider

    def _row(self, case, provider: Provider, status: str, **values) -> dict:
        row = case.to_dict()
        row.update(kind=case.kind, provider=provider.name, family=provider.family, status=status)
        row.update(values)
        return row

    def _skip_reason(self, case, provider: Provider) -> Optional[str]:
        if provider.materialises_scores and case.score_bytes() > memory_limit_bytes(self.device):
            return f"skipped: its scores need ~{case.score_bytes() / GIB:.1f} GiB"
        rate = self.flops_per_ms.get(provider.name)
        if self.max_call_s and rate and case.flops() / rate / 1e3 > self.max_call_s:
            return f"skipped: predicted {case.flops() / rate / 1e3:.0f} s a call (> --max-call-seconds)"
        return None

    def _first_call(self, case, p: Provider, inputs):
        """Binds p to the inputs and runs it once.

        Returns (callable, that call's wall-clock ms, None), or (None, None, why it did not run).
        """
        why = self._skip_reason(case, p)
        if why:
            return None, None, why
        try:
            fn = p.call(*inputs, case.causal)
        except Unsupported as exc:
            return None, None, f"unsupported: {exc}"
        self.clock.sync()
        t0 = time.perf_counter()
        out, why = run_checked(fn)
        self.clock.sync()
        ms = (time.perf_counter() - t0) * 1e3
        del out
        return (None, None, why) if why else (fn, ms, None)

    def time_case(self, case) -> List[dict]:
        inputs = cases_mod.make_inputs(case, self.device)
        rows, fns, first_ms = {}, {}, {}
        for p in self.providers:
            fn, ms, why = self._first_call(case, p, inputs)
            if why:
                rows[p.name] = self._row(case, p, why)
            else:
                fns[p.name], first_ms[p.name] = fn, ms
        timings = measure(fns, first_ms, self.clock, self.budget) if fns else {}
        for name, t in timings.items():
            p = next(p for p in self.providers if p.name == name)
            values = dict(t, tflops=case.flops() / t["ms"] / 1e9, kv_gbps=case.kv_bytes() / t["ms"] / 1e6)
            self.flops_per_ms[name] = max(self.flops_per_ms.get(name, 0.0), case.flops() / t["ms"])
            if self.device.type == "cuda":
                values["peak_extra_mib"] = memory.cuda_peak_extra(fns[name])
            rows[name] = self._row(case, p, "ok", **values)
        return [rows[p.name] for p in self.providers]

    def memory_case(self, case) -> List[dict]:
        """CPU: one fresh process per provider; CUDA: in this process, after a first call."""
        inputs = cases_mod.make_inputs(case, self.device) if self.device.type == "cuda" else None
        rows = []
        for p in self.providers:
            mib, why = None, None
            if inputs is None:
                why = self._skip_reason(case, p)
                if why is None:
                    mib, why = memory.cpu_peak_extra(case, p.name)
            else:
                fn, _, why = self._first_call(case, p, inputs)
                if why is None:
                    mib = memory.cuda_peak_extra(fn)
            rows.append(self._row(case, p, why or "ok", peak_extra_mib=mib))
        return rows


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    lib = import_library()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    dtypes = args.dtype or (["bfloat16"] if device.type == "cuda" else ["float32"])
    chosen = [name for name in cases_mod.PRESETS if getattr(args, name)] or ["quick"]
    case_list = cases_mod.build(chosen, device.type, dtypes, args.seqlens, args.head_dims)
    providers = discover(device.type, args.providers, args.float32_precision)
    if not providers:
        print(f"bench.py: no provider matches --providers {' '.join(args.providers)}", file=sys.stderr)
        return 2
    max_call_s = args.max_call_seconds if args.max_call_seconds is not None else (None if device.type == "cuda" else 60)
    runner = Runner(device, providers, Budget.for_device(device.type, args.seconds), max_call_s)

    meta = report.metadata(device, lib, [os.path.relpath(__file__)] + argv)
    meta.update(presets=chosen, providers={p.name: p.summary for p in providers},
                float32_precision=args.float32_precision or "library default",
                memory_method=memory.method(device.type))
    rows: List[dict] = []
    bar = tqdm(case_list, desc="bench", unit="shape", file=sys.stderr, dynamic_ncols=True)
    for case in bar:
        bar.set_postfix_str(f"{case.measure} {case.label()}")
        rows += runner.time_case(case) if case.measure == "time" else runner.memory_case(case)
    bar.close()

    paths = report.write(args.out, meta, rows)
    if not args.no_plots:
        for name, draw in (("time_vs_seqlen.png", plots.time_plot), ("memory_vs_seqlen.png", plots.memory_plot)):
            if draw(rows, os.path.join(args.out, name), meta):
                paths[name] = os.path.join(args.out, name)
    shown = [os.path.relpath(p) if not os.path.relpath(p).startswith("..") else p for p in paths.values()]
    print(f"{meta['device_name']} | torch {meta['torch']} | commit {meta['git_commit'][:12]}"
          f"{' (dirty)' if meta['git_dirty'] else ''} | wrote " + ", ".join(shown))
    print()
    print(report.tables(rows, device.type))
    summary = report.acceptance_summary(rows)
    if summary:
        print()
        print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
