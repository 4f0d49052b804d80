"""Hypothesis: random small problems (every option mixed) checked against float64 and against properties
that hold for any correct attention. Shapes stay small so the naive kernel keeps the suite fast; S goes
past 128 so the flash kernels cross a key-tile edge. Seeds: derandomised in CI (see conftest.py)."""
import torch
from hypothesis import given
from hypothesis import strategies as st

from support.inputs import randn
from support.runner import attend, check

DTYPES = [torch.float32, torch.float64, torch.bfloat16]


@st.composite
def problems(draw, dtypes=DTYPES, causal_ok=True):
    Hkv = draw(st.sampled_from([1, 2]))
    H = Hkv * draw(st.sampled_from([1, 2, 3]))
    full = (draw(st.integers(1, 2)), H, draw(st.integers(1, 70)), draw(st.integers(1, 150)))
    mask_kind = draw(st.sampled_from([None, "bool", "float"]))
    mask_shape = None
    if mask_kind:
        keep_dims = draw(st.lists(st.booleans(), min_size=4, max_size=4))
        rank = draw(st.integers(0, 4))
        mask_shape = tuple(n if keep else 1 for n, keep in zip(full, keep_dims))[4 - rank:]
    return dict(
        full=full, Hkv=Hkv, E=draw(st.integers(1, 40)), Ev=draw(st.integers(1, 40)),
        dtype=draw(st.sampled_from(dtypes)),
        scale=draw(st.one_of(st.none(), st.floats(-2, 2, allow_nan=False))), mask_kind=mask_kind, mask_shape=mask_shape,
        causal=draw(st.sampled_from([False, "top_left", "bottom_right"])) if causal_ok else False,
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def build(p, device):
    gen = torch.Generator().manual_seed(p["seed"])
    B, H, L, S = p["full"]
    q = randn((B, H, L, p["E"]), gen, p["dtype"], device)
    k = randn((B, p["Hkv"], S, p["E"]), gen, p["dtype"], device)
    v = randn((B, p["Hkv"], S, p["Ev"]), gen, p["dtype"], device)
    mask = None
    if p["mask_kind"] == "bool":
        mask = (torch.rand(p["mask_shape"], generator=gen) < 0.7).to(device)
    elif p["mask_kind"] == "float":
        mask = torch.randn(p["mask_shape"], generator=gen) * 3
        mask = mask.masked_fill(torch.rand(p["mask_shape"], generator=gen) < 0.2, float("-inf")).to(device)
    return q, k, v, mask


def _visible(mask, causal, B, H, L, S, device):
    keep = torch.ones(B, H, L, S, dtype=torch.bool, device=device)
    if mask is not None:
        keep = keep & (mask if mask.dtype == torch.bool else mask > float("-inf"))
    if causal:
        keep = keep & torch.ones(L, S, dtype=torch.bool, device=device).tril(S - L if causal == "bottom_right" else 0)
    return keep


@given(p=problems(dtypes=DTYPES + [torch.float16]))
def test_agrees_with_float64(device, kernel, p):
    q, k, v, mask = build(p, device)
    check(kernel, q, k, v, p["scale"], mask, p["causal"])


@given(p=problems())
def test_rows_are_convex_combinations_of_visible_values(device, kernel, p):
    q, k, v, mask = build(p, device)
    B, H, L, S = p["full"]
    out, lse = attend(kernel, q, k, v, p["scale"], mask, p["causal"])
    keep = _visible(mask, p["causal"], B, H, L, S, device)[..., None]  # (B, H, L, S, 1)
    vv = v.repeat_interleave(H // p["Hkv"], dim=1)[:, :, None].float()  # (B, H, 1, S, Ev)
    lo = vv.masked_fill(~keep, float("inf")).amin(dim=3)
    hi = vv.masked_fill(~keep, float("-inf")).amax(dim=3)
    seen = keep.any(dim=3).squeeze(-1)
    slack = torch.finfo(p["dtype"]).eps * vv.abs().amax().clamp(min=1)
    o = out.float()
    assert (o[seen] >= lo[seen] - slack).all() and (o[seen] <= hi[seen] + slack).all()
    assert (o[~seen] == 0).all()


@given(p=problems(dtypes=[torch.float32, torch.float64], causal_ok=False), perm_seed=st.integers(0, 1000))
def test_permuting_keys_with_values_changes_nothing(device, kernel, p, perm_seed):
    q, k, v, mask = build(p, device)
    S = p["full"][3]
    perm = torch.randperm(S, generator=torch.Generator().manual_seed(perm_seed)).to(device)
    pmask = mask
    if mask is not None and mask.dim() > 0 and mask.shape[-1] == S:
        pmask = mask[..., perm]
    a = attend(kernel, q, k, v, p["scale"], mask, False)
    b = attend(kernel, q, k[:, :, perm], v[:, :, perm], p["scale"], pmask, False)
    tol = 1e-5 if p["dtype"] == torch.float32 else 1e-12
    torch.testing.assert_close(b[0], a[0], rtol=tol, atol=tol * max(1.0, a[0].abs().max().item()))
    torch.testing.assert_close(b[1], a[1], rtol=1e-6, atol=1e-6)


@given(p=problems(dtypes=[torch.float32, torch.float64]), shift=st.floats(-30, 30, allow_nan=False))
def test_shifting_a_float_mask_row_changes_only_the_lse(device, kernel, p, shift):
    q, k, v, _ = build(p, device)
    B, H, L, S = p["full"]
    bias = randn((B, 1, L, S), torch.Generator().manual_seed(p["seed"] + 1), p["dtype"], device)
    row_shift = torch.zeros(B, 1, L, 1, dtype=p["dtype"], device=device)
    row_shift[..., ::2, :] = shift
    a = attend(kernel, q, k, v, p["scale"], bias, p["causal"])
    b = attend(kernel, q, k, v, p["scale"], bias + row_shift, p["causal"])
    tol = 2e-5 if p["dtype"] == torch.float32 else 1e-12
    torch.testing.assert_close(b[0], a[0], rtol=tol, atol=tol * max(1.0, a[0].abs().max().item()))
    seen = torch.isfinite(a[1])
    shifted = a[1].double() + row_shift[..., 0].double()
    torch.testing.assert_close(b[1].double()[seen], shifted[seen], rtol=1e-5, atol=1e-4)
