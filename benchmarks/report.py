"""What a run leaves behind: metadata, JSON and CSV files, and the tables printed at the end."""
from __future__ import annotations

import csv
import datetime
import json
import os
import platform
import subprocess
from typing import Dict, List, Optional

import torch

from providers import ROOT

COLUMNS = ["preset", "kind", "measure", "provider", "family", "status", "dtype", "B", "H", "Hkv", "L", "S", "E", "Ev",
           "causal", "mask", "ms", "ms_min", "ms_p20", "ms_p80", "reps", "tflops", "kv_gbps", "peak_extra_mib"]


def _git(*args) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def metadata(device: torch.device, lib, argv: List[str]) -> dict:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        props = torch.cuda.get_device_properties(device)
        detail = {"sm": f"{props.major}.{props.minor}", "multiprocessors": props.multi_processor_count,
                  "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    else:
        name = _cpu_name()
        detail = {"threads": torch.get_num_threads(), "logical_cpus": os.cpu_count()}
    return {
        "device": device.type,
        "device_name": name,
        "device_detail": detail,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "build_info": lib.build_info(),
        "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(argv),
        "flops_rule": "2*B*H*L*S*(E+Ev) (= 4*B*H*L*S*E), halved when causal; masks count as unmasked",
        "memory_rule": "peak bytes held during one forward beyond the inputs; the output counts",
    }


def write(out_dir: str, meta: dict, rows: List[dict]) -> Dict[str, str]:
    os.makedirs(out_dir, exist_ok=True)
    paths = {"json": os.path.join(out_dir, "results.json"), "csv": os.path.join(out_dir, "results.csv")}
    with open(paths["json"], "w") as f:
        json.dump({"meta": meta, "results": rows}, f, indent=1)
    with open(paths["csv"], "w", newline="") as f:
        f.write("".join(f"# {k}: {json.dumps(v)}\n" for k, v in meta.items()))
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return paths


def _case_label(r: dict) -> str:
    heads = f"H{r['H']}" + (f"/{r['Hkv']}" if r["Hkv"] != r["H"] else "")
    extra = (" causal" if r["causal"] == "top_left" else f" {r['causal']}" if r["causal"] else "")
    extra += f" {r['mask']}-mask" if r["mask"] else ""
    return f"B{r['B']} {heads} L{r['L']} S{r['S']} E{r['E']} {r['dtype']}{extra}"


def _num(x: float) -> str:
    """Three significant digits without exponents: 4230, 96.2, 4.75, 0.754."""
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}" if x >= 1 else f"{x:.3g}"


def _short(status: str) -> str:
    return status.split(":")[0].replace("out of memory", "oom")


def _table(rows: List[dict], cell, title: str) -> str:
    providers = list(dict.fromkeys(r["provider"] for r in rows))
    cases = list(dict.fromkeys(_case_label(r) for r in rows))
    grid = {(_case_label(r), r["provider"]): (cell(r) if r["status"] == "ok" else _short(r["status"])) for r in rows}
    width0 = max(len(c) for c in cases)
    widths = [max(len(p), *(len(grid.get((c, p), "")) for c in cases)) for p in providers]
    lines = [title, "  ".join([" " * width0] + [p.rjust(w) for p, w in zip(providers, widths)])]
    for c in cases:
        lines.append("  ".join([c.ljust(width0)] + [grid.get((c, p), "-").rjust(w) for p, w in zip(providers, widths)]))
    return "\n".join(lines)


def tables(rows: List[dict], device: str) -> str:
    """The time table (median ms and throughput) and the memory table, as text."""
    unit, scale = ("TFLOP/s", 1.0) if device == "cuda" else ("GFLOP/s", 1e3)
    parts = []
    timed = [r for r in rows if r["measure"] == "time"]
    if timed:
        parts.append(_table(timed, lambda r: f"{_num(r['ms'])} ({_num(r['tflops'] * scale)})",
                            f"Forward time: median ms ({unit}, FLOPs counted as in DESIGN.md section 5)"))
    mem = [r for r in rows if r["measure"] == "memory" or r.get("peak_extra_mib") is not None]
    if mem:
        parts.append(_table(mem, lambda r: _num(r["peak_extra_mib"]) if r.get("peak_extra_mib") is not None else "-",
                            "Peak extra memory of one forward, MiB (output included)"))
    return "\n\n".join(parts)


def _pick(rows: List[dict], **want) -> List[dict]:
    return [r for r in rows if r["status"] == "ok" and all(r.get(k) == v for k, v in want.items())]


def _ours_flash(rows: List[dict]) -> Optional[str]:
    names = list(dict.fromkeys(r["provider"] for r in rows if r["family"] == "ours"))
    if "flash" in names:
        return "flash"
    fast = [n for n in names if "naive" not in n]
    return fast[-1] if fast else None


def acceptance_summary(rows: List[dict]) -> str:
    """The README's figures, when the acceptance shapes were measured: time ratios and memory."""
    acc = [r for r in rows if r["preset"] == "acceptance"]
    flash = _ours_flash(acc)
    if not acc or flash is None:
        return ""
    lines = ["Acceptance figures (B=1, H=8, E=64, float32; ratio = our time / their time, < 1 means we are faster)"]
    for N, other in ((2048, "sdpa"), (4096, "naive")):
        for causal in (False, "top_left"):
            mine = _pick(acc, provider=flash, L=N, causal=causal, measure="time")
            theirs = _pick(acc, provider=other, L=N, causal=causal, measure="time")
            if mine and theirs:
                a, b = mine[0]["ms"], theirs[0]["ms"]
                verdict = f"{b / a:.2f}x faster" if a < b else f"{a / b:.2f}x slower"
                lines.append(f"  L=S={N} {'causal' if causal else 'full  '}: {flash} {a:.1f} ms, {other} {b:.1f} ms,"
                             f" {flash}/{other} = {a / b:.3f} ({flash} is {verdict})")
    for name, target in ((flash, "target < 64 MiB"), ("naive", "expected ~1 GiB"), ("sdpa", "for scale")):
        got = _pick(acc, provider=name, L=16384, measure="memory")
        if got and got[0].get("peak_extra_mib") is not None:
            lines.append(f"  peak extra memory L=S=16384, H=1, E=64, float32, {name}: "
                         f"{got[0]['peak_extra_mib']:.1f} MiB ({target})")
    return "\n".join(lines)
