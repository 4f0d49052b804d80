"""PNG plots of a run: forward time vs sequence length, and peak extra memory vs sequence length."""
from __future__ import annotations

import math
from typing import Dict, List, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

MIB = float(1 << 20)


def _style(row: dict, colours: Dict[str, str]) -> dict:
    ours = row["family"] == "ours"
    return {"linestyle": "-" if ours else "--", "marker": "o" if ours else "s", "linewidth": 2 if ours else 1.2,
            "color": colours[row["provider"]], "label": f"{row['provider']} (ours)" if ours else row["provider"]}


def _colours(rows: List[dict]) -> Dict[str, str]:
    """One colour per provider across every panel of a figure."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = list(dict.fromkeys(r["provider"] for r in rows))
    return {name: cycle[i % len(cycle)] for i, name in enumerate(names)}


def _plain(value, _pos) -> str:
    return f"{value:g}"


def _group_title(key: Tuple, rows: List[dict]) -> str:
    preset, kind, dtype, E, causal, mask = key[:6]
    batches, heads = sorted({r["B"] for r in rows}), sorted({(r["H"], r["Hkv"]) for r in rows})
    tokens = {r["B"] * r["L"] for r in rows}
    batch = f"B={batches[0]}" if len(batches) == 1 else f"B·N={tokens.pop()}" if len(tokens) == 1 else "B varies"
    head = ", ".join(f"H={h}" + (f"/{hkv}" if hkv != h else "") for h, hkv in heads)
    what = {"decode": "decode, L=1", "mask": f"dense {mask} mask", "square": "causal" if causal else "full"}[kind]
    return f"{preset}: {what}, {batch}, {head}, E={E}, {dtype}"


def _groups(rows: List[dict]) -> Dict[Tuple, List[dict]]:
    """One panel per curve family; along a curve only S (and, in the B*N = 16k grid, B) changes."""
    groups: Dict[Tuple, List[dict]] = {}
    for r in rows:
        key = (r["preset"], r["kind"], r["dtype"], r["E"], r["causal"], r["mask"], r["Hkv"] / r["H"],
               r["B"] if r["kind"] == "decode" else None)
        groups.setdefault(key, []).append(r)
    return {key: rows for key, rows in groups.items() if len({r["S"] for r in rows}) > 1}  # a curve needs 2 points


def _draw(ax, rows: List[dict], value, colours: Dict[str, str]) -> None:
    by_provider: Dict[str, List[dict]] = {}
    for r in rows:
        by_provider.setdefault(r["provider"], []).append(r)
    for provider_rows in by_provider.values():
        provider_rows.sort(key=lambda r: r["S"])
        ax.plot([r["S"] for r in provider_rows], [value(r) for r in provider_rows], **_style(provider_rows[0], colours))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sorted({r["S"] for r in rows}))
    ax.xaxis.set_major_formatter(FuncFormatter(_plain))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(FuncFormatter(_plain))
    ax.grid(True, which="both", alpha=0.3)


def _grid_of(n: int):
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4.2 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _finish(fig, path: str, title: str) -> None:
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def time_plot(rows: List[dict], path: str, meta: dict) -> bool:
    timed = [r for r in rows if r["measure"] == "time" and r["status"] == "ok"]
    groups, colours = _groups(timed), _colours(timed)
    if not groups:
        return False
    fig, axes = _grid_of(len(groups))
    for ax, (key, group) in zip(axes, groups.items()):
        _draw(ax, group, lambda r: r["ms"], colours)
        ax.set_title(_group_title(key, group), fontsize=9)
        ax.set_xlabel("KV cache length S" if key[1] == "decode" else "sequence length N = L = S")
        ax.set_ylabel("median forward time, ms")
        ax.legend(fontsize=8)
    _finish(fig, path, f"Forward time, {meta['device_name']} (torch {meta['torch']}, commit {meta['git_commit'][:8]})")
    return True


def memory_plot(rows: List[dict], path: str, meta: dict) -> bool:
    mem = [r for r in rows if r["status"] == "ok" and r.get("peak_extra_mib") is not None]
    sweep = [r for r in mem if r["measure"] == "memory"]
    mem = sweep or mem
    groups, colours = _groups(mem), _colours(mem)
    if not groups:
        return False
    fig, axes = _grid_of(len(groups))
    for ax, (key, group) in zip(axes, groups.items()):
        _draw(ax, group, lambda r: max(r["peak_extra_mib"], 1e-2), colours)
        lengths = sorted({r["S"] for r in group})
        one = group[0]
        itemsize = {"float64": 8, "float32": 4}.get(one["dtype"], 2)
        ax.plot(lengths, [one["B"] * one["H"] * n * n * 4 / MIB for n in lengths], ":", color="grey",
                label="the fp32 score matrix, B·H·N²·4 bytes")
        ax.plot(lengths, [one["B"] * one["H"] * n * one["Ev"] * itemsize / MIB for n in lengths], "-.",
                color="grey", label="the output itself, B·H·N·Ev elements")
        ax.set_title(_group_title(key, group), fontsize=9)
        ax.set_xlabel("sequence length N = L = S")
        ax.set_ylabel("peak extra memory, MiB (output included)")
        ax.legend(fontsize=8)
    _finish(fig, path, f"Peak extra memory of one forward, {meta['device_name']} (commit {meta['git_commit'][:8]})")
    return True
