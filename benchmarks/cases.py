"""The benchmark's shapes: one Case per measured input, and the presets that list them.

Presets follow DESIGN.md section 5 (B*N = 16k tokens, hidden 2048, so H = 2048 / E); the quick and
acceptance presets are sized for the device that is present.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, List, Optional, Sequence

import torch

TOKENS = 16384
HIDDEN = 2048
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


@dataclasses.dataclass(frozen=True)
class Case:
    """One input shape. ``measure`` is "time" (timed and, on CUDA, its memory read) or "memory" (memory only)."""

    preset: str
    B: int
    H: int
    L: int
    S: int
    E: int
    dtype: str
    causal: object = False  # False, "top_left" or "bottom_right"
    mask: Optional[str] = None  # None, "bool" or "float": a dense (L, S) mask broadcast over B and H
    Hkv: Optional[int] = None  # None means H (no GQA)
    Ev: Optional[int] = None  # None means E
    measure: str = "time"

    @property
    def hkv(self) -> int:
        return self.H if self.Hkv is None else self.Hkv

    @property
    def ev(self) -> int:
        return self.E if self.Ev is None else self.Ev

    @property
    def kind(self) -> str:
        """Which family of plot and table row the case belongs to."""
        if self.L == 1:
            return "decode"
        return "mask" if self.mask else "square"

    def flops(self) -> float:
        """2*B*H*L*S*(E + Ev): 4*B*H*L*S*E when E == Ev; half when causal; a mask counts as no mask."""
        total = 2.0 * self.B * self.H * self.L * self.S * (self.E + self.ev)
        return total / 2 if self.causal else total

    def kv_bytes(self) -> int:
        """Bytes of K and V that one forward must read at least once (what bounds decode)."""
        itemsize = torch.empty((), dtype=DTYPES[self.dtype]).element_size()
        return self.B * self.hkv * self.S * (self.E + self.ev) * itemsize

    def score_bytes(self) -> int:
        """Bytes of the full float32 (B, H, L, S) score matrix: an upper bound on what a naive kernel holds."""
        acc = 8 if self.dtype == "float64" else 4
        return self.B * self.H * self.L * self.S * acc

    def label(self) -> str:
        parts = [f"B{self.B} H{self.H}" + (f"/{self.hkv}" if self.hkv != self.H else ""), f"L{self.L} S{self.S}",
                 f"E{self.E}" + (f"/{self.ev}" if self.ev != self.E else ""), self.dtype]
        if self.causal:
            parts.append("causal" if self.causal == "top_left" else str(self.causal))
        if self.mask:
            parts.append(f"{self.mask} mask")
        return " ".join(parts)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["Hkv"], d["Ev"] = self.hkv, self.ev
        return d


def make_inputs(case: Case, device: torch.device, seed: int = 0):
    """q, k, v (and the mask, or None) for a case; the mask keeps a random half of the keys."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    dtype = DTYPES[case.dtype]

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)

    q = rand(case.B, case.H, case.L, case.E)
    k = rand(case.B, case.hkv, case.S, case.E)
    v = rand(case.B, case.hkv, case.S, case.ev)
    mask = None
    if case.mask:
        keep = (torch.rand(case.L, case.S, generator=gen) < 0.5).to(device)
        if case.mask == "bool":
            mask = keep
        else:
            zero = torch.zeros((), dtype=dtype, device=device)
            mask = torch.where(keep, zero, torch.full((), float("-inf"), dtype=dtype, device=device))
    return q, k, v, mask


def _square(preset, seqlens, head_dims, dtypes, causals, batch=None, heads=None, mask=None, measure="time"):
    """Self-attention L = S = N; by default B = 16k / N and H = 2048 / E (the papers' grid)."""
    out = []
    for dtype in dtypes:
        for E in head_dims:
            for N in seqlens:
                for causal in causals:
                    B = batch if batch is not None else max(1, TOKENS // N)
                    H = heads if heads is not None else max(1, HIDDEN // E)
                    out.append(Case(preset, B, H, N, N, E, dtype, causal, mask, measure=measure))
    return out


def grid(device: str, dtypes: Sequence[str], seqlens=None, head_dims=None) -> List[Case]:
    seqlens = seqlens or [512, 1024, 2048, 4096, 8192, 16384]
    head_dims = head_dims or [64, 128, 256]
    return _square("grid", seqlens, head_dims, dtypes, [False, "top_left"])


def decode(device: str, dtypes: Sequence[str], seqlens=None, head_dims=None) -> List[Case]:
    """One new query token per sequence against a KV cache, 32 query heads sharing 8 KV heads."""
    if device == "cuda":
        shapes = [(1, 8192), (8, 8192), (32, 4096), (1, 65536), (8, 32768), (1, 131072)]
    else:
        shapes = [(1, 1024), (1, 4096), (1, 16384), (4, 4096)]
    if seqlens:
        shapes = [(b, s) for b in sorted({b for b, _ in shapes}) for s in seqlens]
    E = (head_dims or [128])[0]
    return [Case("decode", B, 32, 1, S, E, dtype, False, None, Hkv=8) for dtype in dtypes for B, S in shapes]


def masked(device: str, dtypes: Sequence[str], seqlens=None, head_dims=None) -> List[Case]:
    """A dense (L, S) mask, random half kept, broadcast over batch and heads; bool and float forms."""
    if device == "cuda":
        seqlens, head_dims, batch, heads = seqlens or [1024, 4096, 8192], head_dims or [128], None, None
    else:
        seqlens, head_dims, batch, heads = seqlens or [512, 1024, 2048], head_dims or [64], 1, 8
    return [c for m in ("bool", "float")
            for c in _square("mask", seqlens, head_dims, dtypes, [False], batch, heads, mask=m)]


def memory_sweep(device: str, dtypes: Sequence[str], seqlens=None, head_dims=None) -> List[Case]:
    """Peak extra memory of one forward as N grows: one sequence, few heads, so the score matrix dominates."""
    if device == "cuda":
        seqlens, heads, E = seqlens or [4096, 8192, 16384, 32768], 16, (head_dims or [128])[0]
    else:
        seqlens, heads, E = seqlens or [1024, 2048, 4096, 8192], 1, (head_dims or [64])[0]
    return _square("memory", seqlens, [E], dtypes, [False], batch=1, heads=heads, measure="memory")


def quick(device: str, dtypes: Sequence[str], seqlens=None, head_dims=None) -> List[Case]:
    if device == "cuda":
        cases = _square("quick", seqlens or [512, 2048, 8192], head_dims or [64, 128], dtypes, [False, "top_left"])
        cases += decode(device, dtypes)[:2]
    else:
        cases = _square("quick", seqlens or [256, 512, 1024, 2048], head_dims or [64], dtypes, [False, "top_left"],
                        batch=1, heads=8)
    return cases + memory_sweep(device, dtypes, head_dims=head_dims)


def acceptance(device: str, dtypes: Sequence[str], seqlens=None, head_dims=None) -> List[Case]:
    """The README's figures (float32): flash vs SDPA at 2048, flash vs naive at 4096, memory at 16384
    (with the smaller lengths too, so the memory plot has a curve)."""
    cases = _square("acceptance", [2048, 4096], [64], ["float32"], [False, "top_left"], batch=1, heads=8)
    return cases + _square("acceptance", [2048, 4096, 8192, 16384], [64], ["float32"], [False], batch=1, heads=1,
                           measure="memory")


PRESETS = {"quick": quick, "grid": grid, "decode": decode, "mask": masked, "memory": memory_sweep,
           "acceptance": acceptance}


def build(presets: Iterable[str], device: str, dtypes: Sequence[str], seqlens=None, head_dims=None) -> List[Case]:
    cases: List[Case] = []
    for name in presets:
        for case in PRESETS[name](device, dtypes, seqlens, head_dims):
            if case not in cases:
                cases.append(case)
    return cases
