"""Quick correctness check of the CPU flash kernel against the float64 reference.

Runs every vector ISA this CPU has (FLASH_ATTN_EXT_CPU_ISA forces the narrower ones), over odd sizes,
dtypes, masks in several broadcast forms, both causal alignments, GQA, strided inputs, fully masked
rows and NaN in hidden K/V rows. It is a developer's smoke test; tests/ holds the real suite.

    python3 benchmarks/cpu_smoke.py            # all ISAs, one subprocess each
    python3 benchmarks/cpu_smoke.py --isa-only # the ISA picked for this process only
"""
import itertools
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # the in-place build
import flash_attn_ext as fa  # noqa: E402
from flash_attn_ext.reference import attention_reference  # noqa: E402

# Error allowed relative to max |reference| output: float32 per DESIGN.md, half types with room for
# the rounding of inputs and outputs.
TOL = {torch.float32: 1e-5, torch.float64: 1e-10, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def check(name, q, k, v, mask=None, causal=False, scale=None, expect_nan_free=True):
    out, lse = fa.flash_attention(q, k, v, scale=scale, mask=mask, causal=causal, return_lse=True, kernel="flash")
    ref, ref_lse = attention_reference(q, k, v, scale=scale, mask=mask, causal=causal)
    if expect_nan_free and not torch.isfinite(out).all():
        raise AssertionError(f"{name}: non-finite output")
    err = (out.double() - ref).abs().max().item() if out.numel() else 0.0
    bound = TOL[q.dtype] * max(ref.abs().max().item() if ref.numel() else 0.0, 1e-3)
    lse_ok = torch.equal(torch.isinf(lse), torch.isinf(ref_lse.float()))
    fin = torch.isfinite(ref_lse)
    lse_err = (lse.double()[fin] - ref_lse[fin]).abs().max().item() if fin.any() else 0.0
    if err > bound or not lse_ok or lse_err > 1e-4 * (1 + ref_lse[fin].abs().max().item() if fin.any() else 1):
        raise AssertionError(f"{name}: err {err:.3g} > {bound:.3g} or lse mismatch ({lse_ok}, {lse_err:.3g})")


def rand(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=torch.float32).to(dtype)


def run_cases():
    torch.manual_seed(0)
    n = 0
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        for (L, S), E in itertools.product([(1, 1), (97, 113), (113, 97), (1025, 97), (64, 1025)], [8, 40, 59, 64, 111, 256]):
            if dtype != torch.float32 and E not in (59, 64):
                continue
            Ev = E if E % 2 else E // 2 + 3
            q, k, v = rand(1, 2, L, E, dtype=dtype), rand(1, 2, S, E, dtype=dtype), rand(1, 2, S, Ev, dtype=dtype)
            for causal in (False, True, "bottom_right"):
                check(f"{dtype} L{L} S{S} E{E} Ev{Ev} causal={causal}", q, k, v, causal=causal)
                n += 1
    # Head dims 1 and 3, explicit and negative scales.
    for E in (1, 3):
        q, k, v = rand(2, 3, 70, E), rand(2, 3, 90, E), rand(2, 3, 90, E)
        check(f"E{E}", q, k, v)
        check(f"E{E} scale", q, k, v, scale=-0.7)
        n += 2
    # Masks: bool and float, full and broadcast, of each float dtype; combined with causal.
    B, H, L, S, E = 2, 4, 131, 150, 48
    q, k, v = rand(B, H, L, E), rand(B, H, S, E), rand(B, H, S, E)
    keep = torch.rand(B, H, L, S) > 0.3
    masks = {
        "bool full": keep,
        "bool (L,S)": keep[0, 0],
        "bool (B,1,1,S)": keep[:, :1, :1, :],
        "bool (1,H,L,1)": keep[:1, :, :, :1],
        "bool stride-0 expand": keep[0, 0].expand(B, H, L, S),
        "float full": torch.randn(B, H, L, S),
        "float -inf (L,S)": torch.where(keep[0, 0], torch.randn(L, S), torch.tensor(float("-inf"))),
        "float (B,1,1,S) -inf": torch.where(keep[:, :1, :1, :], 0.0, float("-inf")),
        "half": torch.randn(L, S).half(),
        "bf16 -inf": torch.where(keep[0, 0], torch.randn(L, S), torch.tensor(float("-inf"))).bfloat16(),
        "double": torch.randn(1, H, 1, S, dtype=torch.float64),
        "non-contiguous": torch.randn(S, L).t(),
    }
    for (name, mask), causal in itertools.product(masks.items(), (False, True, "bottom_right")):
        check(f"mask {name} causal={causal}", q, k, v, mask=mask, causal=causal)
        n += 1
    for dtype in (torch.float16, torch.bfloat16):
        check(f"mask bool {dtype}", q.to(dtype), k.to(dtype), v.to(dtype), mask=keep, causal=True)
        n += 1
    # GQA / MQA.
    for Hkv in (1, 2):
        q, k, v = rand(2, 4, 77, 32), rand(2, Hkv, 88, 32), rand(2, Hkv, 88, 24)
        check(f"GQA Hkv={Hkv}", q, k, v, causal=True)
        n += 1
    # Decoding: blocks of a few rows take the dot-product score path.
    for L, E in itertools.product((1, 2, 3, 4, 5), (3, 16, 59, 128)):
        q, k, v = rand(1, 4, L, E), rand(1, 2, 300, E), rand(1, 2, 300, E + 5)
        keep = torch.rand(L, 300) > 0.3
        check(f"decode L{L} E{E}", q, k, v)
        check(f"decode L{L} E{E} mask", q, k, v, mask=keep, causal="bottom_right")
        check(f"decode L{L} E{E} bf16", q.bfloat16(), k.bfloat16(), v.bfloat16(), causal=True)
        n += 3
    # Strided inputs: (B, L, H, E) storage seen as (B, H, L, E); V with a padded row.
    q = rand(2, 100, 3, 40).transpose(1, 2)
    k = rand(2, 120, 3, 40).transpose(1, 2)
    v = rand(2, 3, 120, 64)[..., :40]
    check("strided", q, k, v, causal="bottom_right")
    n += 1
    # Fully masked rows (mask and bottom-right with L > S): output 0, lse -inf, no NaN.
    q, k, v = rand(1, 2, 90, 16), rand(1, 2, 70, 16), rand(1, 2, 70, 16)
    keep = torch.rand(90, 70) > 0.5
    keep[5] = False
    keep[60:] = False
    check("masked rows", q, k, v, mask=keep)
    check("bottom-right L>S", q, k, v, causal="bottom_right")
    n += 2
    # NaN in hidden K/V rows must not leak: keys past a padding mask, and keys after the causal cut.
    S = 200
    q, k, v = rand(1, 2, 150, 64), rand(1, 2, S, 64), rand(1, 2, S, 64)
    k[..., 180:, :] = float("nan")
    v[..., 180:, :] = float("nan")
    pad = torch.arange(S) < 180
    check("NaN past key padding", q, k, v, mask=pad)
    k2, v2 = k.clone(), v.clone()
    k2[..., 180:, :] = 0
    v2[..., 180:, :] = 0
    v2[..., 77, :] = float("nan")
    out = fa.flash_attention(q, k2, v2, causal=True, kernel="flash")
    if not (torch.isfinite(out[..., :77, :]).all() and torch.isnan(out[..., 77:, :]).all()):
        raise AssertionError("causal NaN in V row 77 leaked into earlier rows or vanished from later ones")
    n += 2
    return n


def check_exp2_polynomial():
    """Horner's rule in float32 with FMA (emulated in float64) over [-0.5, 0.5]: error under 1 ulp."""
    src = open(os.path.join(os.path.dirname(__file__), "..", "csrc", "cpu", "exp2_poly.h")).read()
    body = src.split("kExp2Poly[7] = {")[1].split("}")[0]
    coef = [np.float32(c.strip().rstrip("f")) for c in body.split(",")]
    f = np.linspace(-0.5, 0.5, 100001, dtype=np.float32)
    p = np.full_like(f, coef[6])
    for c in reversed(coef[:6]):
        p = (p.astype(np.float64) * f + np.float64(c)).astype(np.float32)
    ulps = np.abs(p.astype(np.float64) - 2.0 ** f.astype(np.float64)) / np.spacing(p)
    assert ulps.max() < 1.0, f"exp2 polynomial error {ulps.max():.2f} ulp"
    return ulps.max()


def main():
    if "--isa-only" in sys.argv:
        n = run_cases()
        print(f"  {fa.build_info().get('cpu_isa', os.environ.get('FLASH_ATTN_EXT_CPU_ISA', 'best'))}: {n} cases ok")
        return
    print(f"exp2 polynomial: max error {check_exp2_polynomial():.2f} ulp")
    for isa in ("best", "avx2", "portable"):
        env = dict(os.environ)
        if isa != "best":
            env["FLASH_ATTN_EXT_CPU_ISA"] = isa
        print(f"ISA {isa}:", flush=True)
        subprocess.run([sys.executable, __file__, "--isa-only"], env=env, check=True)


if __name__ == "__main__":
    main()
