"""Checks every CUDA kernel of the build against the float64 reference (DESIGN.md section 3).

    python scripts/cuda_rungs_check.py            the sweep: odd sizes, dtypes, masks, causal, GQA, layouts
    python scripts/cuda_rungs_check.py --quick    a few tiny cases with tail tiles (for compute-sanitizer)
    python scripts/cuda_rungs_check.py --repeat 20   runs one case 20 times per kernel: outputs bit-identical?
    python scripts/cuda_rungs_check.py --big      B*H > 65535 and B*H*L*E > 2^31 (64-bit offsets)
    --kernels v1_tiled v2_warp                     restricts the kernels
    --device cpu                                   checks the CPU kernels instead (to test this script)

Prints one line per failure and a last line per kernel: "CHECK <kernel> passed=<n> failed=<n>".
Exit status 1 when anything failed.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from typing import List, Optional

import torch

import flash_attn_ext
from flash_attn_ext.reference import attention_reference

DEV = "cuda"
BF16, F16, F32 = torch.bfloat16, torch.float16, torch.float32


@dataclass
class Case:
    name: str
    L: int
    S: int
    E: int
    Ev: Optional[int] = None
    B: int = 2
    H: int = 2
    Hkv: Optional[int] = None
    dtype: torch.dtype = BF16
    layout: str = "contig"        # contig | bshd | offset1 | packed
    mask: Optional[str] = None    # see make_mask
    mask_dtype: torch.dtype = torch.bool
    causal: object = False
    scale: Optional[float] = None
    q_std: float = 1.0
    nan_hidden: bool = False      # NaN in K/V rows that no query may see
    extra: dict = field(default_factory=dict)


def alloc(shape, dtype, layout, gen):
    x = torch.randn(shape, generator=gen, device=DEV, dtype=torch.float32).to(dtype)
    if layout == "bshd":
        return x.transpose(1, 2).contiguous().transpose(1, 2)
    if layout == "offset1":
        flat = torch.empty(x.numel() + 1, dtype=dtype, device=DEV)
        view = flat[1:].view(shape)
        view.copy_(x)
        return view
    return x


def make_qkv(c: Case, gen):
    Ev = c.Ev or c.E
    Hkv = c.Hkv or c.H
    if c.layout == "packed":  # one (B, L, 3, H, E) projection output, sliced: strided views of one buffer
        assert c.L == c.S and Ev == c.E and Hkv == c.H
        qkv = torch.randn(c.B, c.L, 3, c.H, c.E, generator=gen, device=DEV).to(c.dtype)
        return [qkv[:, :, n].transpose(1, 2) for n in range(3)]
    q = alloc((c.B, c.H, c.L, c.E), c.dtype, c.layout, gen)
    k = alloc((c.B, Hkv, c.S, c.E), c.dtype, c.layout, gen)
    v = alloc((c.B, Hkv, c.S, Ev), c.dtype, c.layout, gen)
    if c.q_std != 1.0:
        q.mul_(c.q_std)
    return q, k, v


def make_mask(c: Case, gen):
    """Masks in the broadcast forms the API promises, bool (True = attend) or float (added, -inf = hidden)."""
    B, H, L, S = c.B, c.H, c.L, c.S
    shapes = {"ls": (L, S), "b1ls": (B, 1, L, S), "1h1s": (1, H, 1, S), "s": (S,), "full": (B, H, L, S),
              "11ls": (1, 1, L, S)}
    if c.mask is None:
        return None
    if c.mask in shapes:
        keep = torch.rand(shapes[c.mask], generator=gen, device=DEV) < 0.7
    elif c.mask == "expand":  # one row of keys, expanded below to a stride-0 (B, H, L, S) view
        keep = torch.rand(S, generator=gen, device=DEV) < 0.6
    elif c.mask == "transposed":  # non-contiguous (L, S): stored as (S, L)
        keep = (torch.rand(S, L, generator=gen, device=DEV) < 0.7).t()
    elif c.mask == "dead_rows":  # whole query rows that see no key
        keep = torch.rand(L, S, generator=gen, device=DEV) < 0.7
        keep[:: 3] = False
    elif c.mask == "keypad":  # the last keys hidden from every query (padding)
        keep = torch.ones(B, 1, 1, S, dtype=torch.bool, device=DEV)
        keep[..., S - c.extra.get("pad", 7):] = False
    else:
        raise ValueError(c.mask)
    if c.mask_dtype == torch.bool:
        mask = keep
    else:
        bias = torch.randn(keep.shape, generator=gen, device=DEV) * 2
        mask = bias.masked_fill(~keep, float("-inf")).to(c.mask_dtype)
    return mask.expand(B, H, L, S) if c.mask == "expand" else mask


def hidden_keys(c: Case, mask) -> Optional[torch.Tensor]:
    """Bool (B, Hkv-compatible, S): keys no query of a head may see (where NaN is planted)."""
    if not c.nan_hidden:
        return None
    ref_keep = torch.ones(c.B, c.H, c.L, c.S, dtype=torch.bool, device=DEV)
    if mask is not None:
        ref_keep &= mask if mask.dtype == torch.bool else (mask != float("-inf"))
    if c.causal:
        off = c.S - c.L if c.causal == "bottom_right" else 0
        i = torch.arange(c.L, device=DEV)[:, None]
        j = torch.arange(c.S, device=DEV)[None, :]
        ref_keep &= j <= i + off
    return ~ref_keep.any(dim=2)  # (B, H, S)


def tolerance(c: Case, q, k, v, mask, ref_out, loose: bool):
    peak = ref_out.abs().max().item() if ref_out.numel() else 0.0
    peak = peak if math.isfinite(peak) else 0.0
    if loose:  # under a sanitizer: catch wrong results, skip the second (low-precision) reference
        return (1e-4 if c.dtype == F32 else 3e-2) * max(peak, 1e-6)
    if c.dtype == F32:
        return 1e-5 * max(peak, 1e-6)
    low, _ = attention_reference(q, k, v, c.scale, mask, c.causal, dtype=c.dtype)
    low_err = (low.double() - ref_out).abs().nan_to_num(0.0).max().item() if ref_out.numel() else 0.0
    return 2.0 * low_err + torch.finfo(c.dtype).eps * max(peak, 1e-6)


def run_case(c: Case, kernel: str, gen, loose: bool = False) -> Optional[str]:
    q, k, v = make_qkv(c, gen)
    mask = make_mask(c, gen)
    hid = hidden_keys(c, mask)
    if hid is not None and hid.any():
        group = c.H // (c.Hkv or c.H)
        hid_kv = hid.view(c.B, c.H // group, group, c.S).all(dim=2)  # hidden from every query head of the group
        k.masked_fill_(hid_kv[..., None], float("nan"))
        v.masked_fill_(hid_kv[..., None], float("nan"))
    # Poison: the allocator hands this block back for out, so unwritten outputs show up as NaN.
    poison = torch.full((c.B, c.H, c.L, c.Ev or c.E), float("nan"), dtype=c.dtype, device=DEV)
    del poison
    out, lse = flash_attn_ext.flash_attention(q, k, v, scale=c.scale, mask=mask, causal=c.causal,
                                              return_lse=True, kernel=kernel)
    ref_out, ref_lse = attention_reference(q, k, v, c.scale, mask, c.causal)
    if not torch.equal(torch.isnan(out), torch.isnan(ref_out)):
        return f"NaN pattern differs ({int(torch.isnan(out).sum())} NaN in out, {int(torch.isnan(ref_out).sum())} in ref)"
    err = (out.double() - ref_out).abs().nan_to_num(0.0).max().item() if out.numel() else 0.0
    tol = tolerance(c, q, k, v, mask, ref_out, loose)
    if not err <= tol:
        return f"out error {err:.3e} > tol {tol:.3e}"
    ninf = torch.isneginf(ref_lse)
    if not torch.equal(torch.isneginf(lse), ninf):
        return "lse -inf pattern differs"
    fin = ~ninf
    lerr = (lse.double()[fin] - ref_lse[fin]).abs() / ref_lse[fin].abs().clamp(min=1.0)
    if lerr.numel() and not lerr.max().item() <= 2e-4:
        return f"lse relative error {lerr.max().item():.3e} > 2e-4"
    return None


def sweep_cases() -> List[Case]:
    cs: List[Case] = []
    sizes = [(1, 1, 8, 8), (97, 113, 40, 40), (113, 97, 59, 59), (1025, 97, 64, 64), (97, 1025, 80, 80),
             (113, 113, 111, 111), (97, 1025, 128, 128), (1025, 113, 256, 256), (64, 64, 64, 40),
             (33, 77, 111, 256), (1, 1025, 128, 128), (1025, 1, 8, 8), (17, 19, 1, 3), (17, 19, 3, 1)]
    for dt in (BF16, F16, F32):
        for L, S, E, Ev in sizes:
            cs.append(Case(f"size L{L} S{S} E{E} Ev{Ev}", L, S, E, Ev, dtype=dt))
        base = dict(L=97, S=113, E=64, dtype=dt)
        cs += [
            Case("gqa 6/2", H=6, Hkv=2, **base), Case("mqa 4/1", H=4, Hkv=1, **base),
            Case("scale 0.3", scale=0.3, **base), Case("scale -0.5", scale=-0.5, **base),
            Case("layout bshd", layout="bshd", **base), Case("layout offset1", layout="offset1", **base),
            Case("layout packed", L=113, S=113, E=64, layout="packed", dtype=dt),
            Case("layout offset1 E59", L=97, S=113, E=59, layout="offset1", dtype=dt),
        ]
        for m in ("ls", "b1ls", "1h1s", "s", "full", "expand", "transposed", "dead_rows"):
            cs.append(Case(f"bool mask {m}", mask=m, **base))
        for mdt in (F32, F16, BF16, torch.float64):
            cs.append(Case(f"float mask {mdt}", mask="ls", mask_dtype=mdt, **base))
        cs.append(Case("float mask full", mask="full", mask_dtype=F32, **base))
        cs.append(Case("float mask dead rows", mask="dead_rows", mask_dtype=F32, **base))
        for causal in ("top_left", "bottom_right"):
            for L, S in ((97, 1025), (1025, 97), (113, 113)):
                cs.append(Case(f"causal {causal} L{L} S{S}", L, S, 64, dtype=dt, causal=causal))
            cs.append(Case(f"causal {causal} + bool mask", 113, 257, 80, dtype=dt, causal=causal, mask="ls"))
            cs.append(Case(f"causal {causal} + float mask", 257, 113, 40, dtype=dt, causal=causal, mask="full",
                           mask_dtype=F32))
            cs.append(Case(f"causal {causal} + gqa E128", 200, 300, 128, H=4, Hkv=2, dtype=dt, causal=causal))
        cs.append(Case("nan in padded keys", mask="keypad", nan_hidden=True, extra={"pad": 17}, **base))
        cs.append(Case("nan past causal (top_left L<S)", 97, 300, 64, dtype=dt, causal="top_left", nan_hidden=True))
        cs.append(Case("nan keypad + causal gqa", 129, 200, 64, H=4, Hkv=2, dtype=dt, causal="bottom_right",
                       mask="keypad", nan_hidden=True, extra={"pad": 40}))
        if dt != F32:
            cs.append(Case("large logits", q_std=30.0, **base))
    return cs


def quick_cases() -> List[Case]:
    """Small, with tails in L, S and E, every feature once per dtype: for the sanitizer tools."""
    cs: List[Case] = []
    for dt in (BF16, F16, F32):
        cs += [
            Case("tail", 37, 45, 59, 40, dtype=dt),
            Case("gqa + causal br + mask", 45, 37, 72, H=4, Hkv=2, dtype=dt, causal="bottom_right", mask="ls"),
            Case("float mask + causal tl", 33, 70, 128, dtype=dt, causal="top_left", mask="full", mask_dtype=F16),
            Case("E256 offset1", 20, 33, 256, 200, dtype=dt, layout="offset1"),
            Case("dead rows keypad nan", 35, 33, 16, dtype=dt, mask="keypad", nan_hidden=True),
        ]
    return cs


def big_cases() -> List[Case]:
    return [Case("B*H = 70000 > 65535", 3, 5, 8, B=2, H=35000, Hkv=5000, dtype=BF16)]


def run_repeat(kernel: str, n: int, gen) -> Optional[str]:
    c = Case("repeat", 1025, 1025, 128, B=2, H=4, dtype=BF16, causal="bottom_right", mask="b1ls")
    q, k, v = make_qkv(c, gen)
    mask = make_mask(c, gen)
    first = flash_attn_ext.flash_attention(q, k, v, mask=mask, causal=c.causal, return_lse=True, kernel=kernel)
    for r in range(n - 1):
        again = flash_attn_ext.flash_attention(q, k, v, mask=mask, causal=c.causal, return_lse=True, kernel=kernel)
        for a, b in zip(first, again):
            bits = torch.int16 if a.element_size() == 2 else torch.int32  # NaN-proof bitwise comparison
            if not torch.equal(a.view(bits), b.view(bits)):
                return f"run {r + 2} differs bitwise from run 1"
    return None


def run_huge_offsets(kernel: str, gen) -> Optional[str]:
    """q and out of 2^31 + elements: row offsets overflow 32 bits; checked on the first and last rows."""
    L, E, S = (1 << 25) + 3, 64, 8
    q = torch.randn(1, 1, L, E, device=DEV, dtype=BF16)
    k = torch.randn(1, 1, S, E, device=DEV, dtype=BF16)
    v = torch.randn(1, 1, S, E, device=DEV, dtype=BF16)
    out = flash_attn_ext.flash_attention(q, k, v, kernel=kernel)
    for sl in (slice(0, 64), slice(L - 64, L)):
        ref, _ = attention_reference(q[:, :, sl], k, v)
        err = (out[:, :, sl].double() - ref).abs().max().item()
        if not err < 2e-2:
            return f"rows {sl.start}..{sl.stop}: error {err:.3e}"
    del q, out
    torch.cuda.empty_cache()
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--big", action="store_true")
    ap.add_argument("--repeat", type=int, default=0)
    ap.add_argument("--kernels", nargs="+")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = ap.parse_args(argv)
    global DEV
    DEV = args.device
    names = [k["name"] for k in flash_attn_ext.kernels(DEV)]
    if args.kernels:
        names = [n for n in names if n in args.kernels]
    if not names:
        print(f"CHECK no {DEV} kernels in this build")
        return 1
    any_fail = False
    for name in names:
        gen = torch.Generator(device=DEV).manual_seed(1234)
        passed = failed = declined = 0
        jobs = []
        if args.repeat:
            jobs.append(("repeat", lambda: run_repeat(name, args.repeat, gen)))
        elif args.big:
            jobs += [(c.name, (lambda c=c: run_case(c, name, gen))) for c in big_cases()]
            jobs.append(("2^31 offsets", lambda: run_huge_offsets(name, gen)))
        else:
            cases = quick_cases() if args.quick else sweep_cases()
            jobs += [(f"{c.name} [{str(c.dtype)[6:]}]", (lambda c=c: run_case(c, name, gen, args.quick))) for c in cases]
        for label, job in jobs:
            try:
                msg = job()
            except Exception as exc:  # a crash is a failure of this case; keep checking the others
                if isinstance(exc, ValueError) and f"flash_attention: kernel='{name}' " in str(exc):
                    declined += 1  # the rung refuses these inputs (what it takes, or needs); auto routes around it
                    continue
                msg = f"raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if msg is None:
                passed += 1
            else:
                failed += 1
                print(f"FAIL {name}: {label}: {msg}", flush=True)
        any_fail |= failed > 0
        print(f"CHECK {name} passed={passed} failed={failed} declined={declined}", flush=True)
    return 1 if any_fail else 0


if __name__ == "__main__":
    sys.exit(main())
