"""Agreement with torch.nn.functional.scaled_dot_product_attention, an implementation independent of our
reference: SDPA in float64 is the oracle, SDPA in the input dtype sets the half-precision error budget.
Rows that see no key are left out (SDPA gives NaN or 0 there, depending on its backend)."""
import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right

from support.inputs import ALL_DTYPES, bool_mask, float_mask, qkv
from support.numerics import max_err
from support.runner import attend

B, H, L, S = 2, 4, 77, 130


def _sdpa(q, k, v, scale, mask, causal):
    gqa = q.shape[1] != k.shape[1]
    if causal == "bottom_right":
        mask = causal_lower_right(q.shape[2], k.shape[2])
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=bool(causal), scale=scale, enable_gqa=gqa)


def _to64(t):
    return None if t is None else (t.double() if t.is_floating_point() else t).cpu()


def _rows_seeing_a_key(mask, causal, device):
    keep = torch.ones(B, H, L, S, dtype=torch.bool, device=device)
    if mask is not None:
        keep = keep & (mask if mask.dtype == torch.bool else mask > float("-inf"))
    if causal:
        offset = S - L if causal == "bottom_right" else 0
        keep = keep & torch.ones(L, S, dtype=torch.bool, device=device).tril(offset)
    return keep.any(-1)


CASES = {
    "plain": lambda gen, dev: (None, False, None, H),
    "bool-mask": lambda gen, dev: (bool_mask((B, 1, L, S), gen, device=dev), False, None, H),
    "float-mask": lambda gen, dev: (float_mask((L, S), gen, device=dev), False, None, H),
    "causal": lambda gen, dev: (None, True, None, H),
    "bottom-right": lambda gen, dev: (None, "bottom_right", None, H),
    "scale-gqa": lambda gen, dev: (None, False, 0.37, 2),
    "mask-and-gqa": lambda gen, dev: (bool_mask((B, H, L, S), gen, keep=0.3, device=dev), False, None, 1),
}


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("case", list(CASES))
def test_agrees_with_sdpa(device, kernel, gen, case, dtype):
    mask, causal, scale, Hkv = CASES[case](gen, device)
    q, k, v = qkv(gen, B=B, H=H, Hkv=Hkv, L=L, S=S, E=40, Ev=24, dtype=dtype, device=device)
    if mask is not None and mask.is_floating_point():
        mask = mask.to(dtype)
    out, _ = attend(kernel, q, k, v, scale, mask, causal)
    rows = _rows_seeing_a_key(mask, causal, device).cpu()
    oracle = _sdpa(_to64(q), _to64(k), _to64(v), scale, _to64(mask), causal)[rows]
    amax = oracle.abs().max().item()
    err = max_err(out.cpu()[rows], oracle)
    if dtype in (torch.float64, torch.float32):
        tol = (1e-12 if dtype == torch.float64 else 1e-5) * amax
    else:
        low = _sdpa(q, k, v, scale, mask, causal).cpu()[rows]
        tol = 2 * max_err(low, oracle) + torch.finfo(dtype).eps * amax
    assert err <= tol, f"max |ours - SDPA(float64)| = {err:.3e} > {tol:.3e}"
