"""Bool and float masks: every broadcast form, layouts, dtypes, and rows the mask hides completely."""
import itertools

import pytest
import torch

from support.inputs import bool_mask, float_mask, qkv
from support.runner import attend, check

B, H, L, S = 2, 3, 37, 70
FULL = (B, H, L, S)
# Every 4-D form [B|1, H|1, L|1, S|1], then the shorter ranks broadcasting from the right.
FORMS_4D = [
    tuple(n if keep else 1 for n, keep in zip(FULL, keeps)) for keeps in itertools.product((True, False), repeat=4)
]
FORMS_LOW = [(S,), (1,), (L, S), (1, S), (L, 1), (H, L, S), (1, L, S), (H, 1, S), (H, L, 1), ()]
FORMS = FORMS_4D + FORMS_LOW
MASK_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _id(shape):
    return "x".join(map(str, shape)) or "scalar"


@pytest.mark.parametrize("shape", FORMS, ids=_id)
def test_bool_mask_broadcasts(device, kernel, gen, shape):
    q, k, v = qkv(gen, B=B, H=H, L=L, S=S, device=device)
    check(kernel, q, k, v, mask=bool_mask(shape, gen, device=device))


@pytest.mark.parametrize("shape", FORMS, ids=_id)
def test_float_mask_broadcasts(device, kernel, gen, shape):
    q, k, v = qkv(gen, B=B, H=H, L=L, S=S, device=device)
    check(kernel, q, k, v, mask=float_mask(shape, gen, device=device))


@pytest.mark.parametrize("mask_dtype", MASK_DTYPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=str)
def test_float_mask_dtypes(device, kernel, gen, dtype, mask_dtype):
    q, k, v = qkv(gen, B=B, H=H, L=L, S=S, dtype=dtype, device=device)
    check(kernel, q, k, v, mask=float_mask((B, 1, L, S), gen, dtype=mask_dtype, device=device))


def test_bool_mask_equals_zero_minus_inf_float_mask(device, kernel, gen):
    q, k, v = qkv(gen, B=B, H=H, L=L, S=S, device=device)
    keep = bool_mask((1, H, L, S), gen, device=device)
    bias = torch.zeros(keep.shape, device=device).masked_fill(~keep, float("-inf"))
    out_b, lse_b = attend(kernel, q, k, v, mask=keep)
    out_f, lse_f = attend(kernel, q, k, v, mask=bias)
    torch.testing.assert_close(out_b, out_f, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(lse_b, lse_f, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("float_bias", [False, True], ids=["bool", "float"])
@pytest.mark.parametrize("shape", [(L, S), (1, H, 1, S), (B, 1, L, 1), (S,)], ids=_id)
def test_stride0_and_noncontiguous_masks_equal_contiguous(device, kernel, gen, shape, float_bias):
    q, k, v = qkv(gen, B=B, H=H, L=L, S=S, device=device)
    small = (float_mask if float_bias else bool_mask)(shape, gen, device=device)
    expanded = small.expand(FULL)
    every_other = tuple(slice(None, None, 2) for _ in shape)
    strided = torch.zeros([2 * n for n in shape], dtype=small.dtype, device=device)[every_other]
    strided.copy_(small)
    variants = [expanded, strided]
    if len(shape) > 1:
        variants.append(small.transpose(-1, -2).contiguous().transpose(-1, -2))
    assert 0 in expanded.stride() and not strided.is_contiguous()
    base, base_lse = check(kernel, q, k, v, mask=small)
    for variant in variants:
        out, lse = attend(kernel, q, k, v, mask=variant)
        same = torch.equal(out, base) and torch.equal(lse, base_lse)
        assert same, f"mask strides {variant.stride()} changed the result"


def test_fully_masked_rows_give_zero_and_minus_inf(device, kernel, gen):
    q, k, v = qkv(gen, B=B, H=H, L=L, S=S, device=device)
    keep = bool_mask(FULL, gen, device=device)
    keep[0, 1, 5] = False
    keep[1, :, 0] = False
    keep[:, 2, -1] = False
    out, lse = check(kernel, q, k, v, mask=keep)
    for b, h, i in ((0, 1, 5), (1, 0, 0), (1, 2, 0), (0, 2, L - 1)):
        assert (out[b, h, i] == 0).all() and lse[b, h, i] == float("-inf")
    assert not out.isnan().any()


def test_every_row_masked(device, kernel, gen):
    q, k, v = qkv(gen, B=B, H=H, L=L, S=S, device=device)
    for mask in (torch.zeros(S, dtype=torch.bool, device=device), torch.full((L, S), float("-inf"), device=device)):
        out, lse = attend(kernel, q, k, v, mask=mask)
        assert (out == 0).all() and (lse == float("-inf")).all()


def test_large_negative_finite_bias_is_not_masking(device, kernel, gen):
    # A finite bias, however negative, still lets the row attend; only -inf hides a key. float32 scores near
    # -1e4 keep ~1e-3 absolute precision, hence the half-precision rule for float32 here.
    q, k, v = qkv(gen, B=1, H=2, L=L, S=S, device=device)
    bias = float_mask((L, S), gen, device=device, hide=0.0)
    bias[3] = -1e4
    bias[4, :10] = -1e9
    out, lse = check(kernel, q, k, v, mask=bias, budget_dtype=torch.float32)
    assert (lse[0, :, 3] < -9e3).all() and (out[0, :, 3].abs().sum(-1) > 0).all()


def test_band_mask(device, kernel, gen):
    q, k, v = qkv(gen, B=1, H=2, L=150, S=150, E=32, device=device)
    i = torch.arange(150)[:, None]
    j = torch.arange(150)[None, :]
    band = torch.zeros(150, 150).masked_fill((i - j).abs() > 7, float("-inf")).to(device)
    check(kernel, q, k, v, mask=band)
    check(kernel, q, k, v, mask=band.isfinite())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_masks_in_half_precision(device, kernel, gen, dtype):
    q, k, v = qkv(gen, B=B, H=H, L=113, S=203, dtype=dtype, device=device)
    check(kernel, q, k, v, mask=bool_mask((B, 1, 113, 203), gen, device=device))
    check(kernel, q, k, v, mask=float_mask((113, 203), gen, dtype=dtype, device=device))


# Shapes at the Hopper rung's own head dims (16-bit, E in {64, 128}; the tests above use E = 16, which
# v4_wgmma runs padded to 64): every bool-mask path of v4 (bits packed per 128 x 128 tile: tiles nobody
# sees skipped, tiles everybody sees unmasked, the rest masked) on every kernel. L and S cross
# 128-row and 128-key tile edges with tails.
FAST_B, FAST_H, FAST_L, FAST_S = 2, 3, 150, 290
FAST_FORMS = [(FAST_L, FAST_S), (FAST_B, 1, FAST_L, FAST_S), (1, FAST_H, FAST_L, FAST_S),
              (FAST_B, FAST_H, FAST_L, FAST_S), (FAST_B, 1, 1, FAST_S), (FAST_L, 1)]


def _blocky_mask(shape, gen, device):
    """A random mask with whole 128 x 128 tiles hidden and whole tiles kept, fully masked rows, and
    a random part: every tile class of the v4 pre-pass."""
    keep = torch.rand(shape, generator=gen) < 0.5
    if len(shape) >= 2 and shape[-1] > 1 and shape[-2] > 1:
        keep[..., :128, 128:256] = False
        keep[..., :128, :128] = True
        keep[..., 140:145, :] = False
    return keep.to(device)


@pytest.mark.parametrize("causal", [False, "top_left", "bottom_right"], ids=str)
@pytest.mark.parametrize("shape", FAST_FORMS, ids=_id)
def test_bool_mask_fast_path_shapes(device, kernel, gen, shape, causal):
    E = 64 if causal == "top_left" else 128
    q, k, v = qkv(gen, B=FAST_B, H=FAST_H, L=FAST_L, S=FAST_S, E=E, dtype=torch.bfloat16, device=device)
    check(kernel, q, k, v, mask=_blocky_mask(shape, gen, device), causal=causal)


@pytest.mark.parametrize("LS", [(300, 150), (1, 257), (129, 1)], ids=str)
def test_bool_mask_fast_path_gqa_and_tails(device, kernel, gen, LS):
    L, S = LS
    q, k, v = qkv(gen, B=2, H=4, Hkv=2, L=L, S=S, E=64, dtype=torch.float16, device=device)
    keep = bool_mask((2, 1, L, S), gen, keep=0.5, device=device)
    keep[0, 0, : L // 2] = False  # fully masked rows in batch 0
    out, lse = check(kernel, q, k, v, mask=keep, causal="bottom_right")
    check(kernel, q, k, v, mask=keep)
    assert not out.isnan().any()
