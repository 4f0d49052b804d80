"""The tolerance rule of DESIGN.md §3, in one place.

Every output is compared with the float64 reference computed on the CPU from the same (already rounded)
inputs. Allowed error, as max |out - ref| over the whole output:
- float64: 1e-12 x max |ref| (float64 accumulation leaves ~1e-15; the margin covers long rows).
- float32: 1e-5 x max |ref| (measured on the CPU kernels: ~1.3e-6 at L = S = 1025, E = 64..256).
- float16 / bfloat16: 2 x the error of plain PyTorch doing the same math in that dtype on the same device
  (``attention_reference(..., dtype=dtype)``), plus one ulp of max |ref| (the rounding floor: when PyTorch
  happens to be exact, e.g. S = 1, the output still has to be stored in the dtype).
``budget_dtype="tf32"`` takes it from the float64 attention of q, k and v rounded to TF32 (10 mantissa bits, to
nearest): what TF32 operands cost, the budget of ``float32_precision="tf32"`` (PyTorch's own float32 with TF32
matmuls is none: cuBLAS runs small shapes, one row or one key, without TF32).
``budget_dtype=torch.float32`` takes the budget from plain PyTorch in float32 instead, for every input dtype:
with logits ~1e4 the float32 score rounding alone is ~1e-3 relative (a fixed 1e-5 bound would test only the
input scale), and PyTorch in bfloat16 is off by O(1) there (its budget would test nothing), while our kernels
accumulate in float32 and must do as well as float32 does.
Rows that see no key must be exactly 0 with LSE exactly -inf; nothing may be NaN; the LSE must agree
with the float64 one to 1e-5 x (1 + |lse|) (it is float32 for every input dtype), or to twice the
budget run's own LSE error where a ``budget_dtype`` is given and that is larger.
"""
from __future__ import annotations

import math

import torch

from flash_attn_ext.reference import attention_reference

REL_TOL = {torch.float64: 1e-12, torch.float32: 1e-5}
LSE_TOL = 1e-5


def _cpu(t):
    return None if t is None else t.cpu()


def reference(q, k, v, scale=None, mask=None, causal=False, dtype=torch.float64):
    return attention_reference(_cpu(q), _cpu(k), _cpu(v), scale, _cpu(mask), causal, dtype=dtype)


def max_err(a, b) -> float:
    if a.numel() == 0:
        return 0.0
    return (a.double().cpu() - b.double().cpu()).abs().max().item()


def lse_error(lse, ref_lse) -> float:
    """max |lse - ref| / (1 + |ref|) over the rows that see a key."""
    seen = ref_lse != float("-inf")
    if not seen.any():
        return 0.0
    return ((lse.double().cpu() - ref_lse).abs() / (1 + ref_lse.abs()))[seen].max().item()


def round_to_tf32(t):
    """t rounded to TF32 on the CPU (to nearest, ties away: add half of the 13 dropped bits, then clear them)."""
    bits = t.detach().float().cpu().contiguous().view(torch.int32)
    return ((bits + 0x1000) & -0x2000).view(torch.float32)


def allowed_error(ref, q, k, v, scale=None, mask=None, causal=False, budget_dtype=None, ref_lse=None):
    """(output bound, LSE bound). The LSE bound is LSE_TOL, or twice the budget run's own LSE error when that
    is larger (TF32 matmuls round the scores to 10 bits, which moves the LSE by ~1e-5)."""
    amax = ref.abs().max().item() if ref.numel() else 0.0
    if budget_dtype is None:
        if q.dtype in REL_TOL:
            return REL_TOL[q.dtype] * amax, LSE_TOL
        budget_dtype = q.dtype
    if budget_dtype == "tf32":
        low, low_lse = reference(*(round_to_tf32(t) for t in (q, k, v)), scale, mask, causal)
    else:
        low, low_lse = attention_reference(q, k, v, scale, mask, causal, dtype=budget_dtype)
    low_err = max_err(low, ref)
    assert math.isfinite(low_err), "PyTorch's own low-precision run overflowed: pick smaller inputs"
    lse_tol = LSE_TOL if ref_lse is None else max(LSE_TOL, 2 * lse_error(low_lse, ref_lse))
    return 2 * low_err + torch.finfo(q.dtype).eps * amax, lse_tol


def assert_matches_reference(out, lse, q, k, v, scale=None, mask=None, causal=False, budget_dtype=None):
    """Checks shapes, dtypes, fully masked rows, the output error bound and the LSE against float64."""
    ref, ref_lse = reference(q, k, v, scale, mask, causal)
    assert (out.shape, out.dtype, out.device) == (ref.shape, q.dtype, q.device), (out.shape, out.dtype, out.device)
    assert lse.shape == ref_lse.shape and lse.dtype == torch.float32 and lse.device == q.device, (lse.shape, lse.dtype)
    out_c, lse_c = out.cpu(), lse.cpu()
    assert not out_c.isnan().any() and not out_c.isinf().any(), "output has NaN/Inf"
    assert not lse_c.isnan().any() and not (lse_c == float("inf")).any(), "lse has NaN/+Inf"

    empty = ref_lse == float("-inf")
    assert torch.equal(lse_c == float("-inf"), empty), "lse is -inf exactly on the rows that see no key"
    assert (out_c[empty] == 0).all(), "rows that see no key must be exactly 0"

    tol, lse_tol = allowed_error(ref, q, k, v, scale, mask, causal, budget_dtype, ref_lse)
    err, amax = max_err(out_c, ref), ref.abs().max().item()
    assert err <= tol, f"max |out - ref| = {err:.3e} > allowed {tol:.3e} ({q.dtype}, max |ref| = {amax:.3e})"
    lse_err = lse_error(lse_c, ref_lse)
    assert lse_err <= lse_tol, f"lse relative error {lse_err:.3e} > {lse_tol:.1e}"
    return ref, ref_lse
