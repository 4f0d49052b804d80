"""Scales on the Hopper rung, through each of its kernels. v4's softmax keeps raw scores and folds
c = scale * log2(e) into one FMA per exponent, which needs c > 0: a negative scale runs as |c| on -Q
(each consumer warpgroup flips the sign of its Q rows in shared memory), a zero scale as a tiny c.
Each case goes through the one-item kernel, the persistent kernel, its cross-item form, the masked
kernel and the float32 (TF32) kernel, with key tails and rows that see no key."""
import pytest
import torch

from support.inputs import qkv
from support.runner import V4_PATHS, attend, check, needs_sm90, on_v4_path

pytestmark = needs_sm90

SCALES = [-0.3, 0.0, 0.7]


@pytest.mark.parametrize("scale", SCALES, ids=str)
@pytest.mark.parametrize("path", V4_PATHS, ids=[p[0] for p in V4_PATHS])
@pytest.mark.parametrize("E", [64, 128])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_scales_16bit(gen, monkeypatch, dtype, E, path, scale):
    L, S, causal = on_v4_path(monkeypatch, path)
    q, k, v = qkv(gen, B=2, H=4, Hkv=2, L=L, S=S, E=E, dtype=dtype, device="cuda")
    check("v4_wgmma", q, k, v, scale=scale, causal=causal)


@pytest.mark.parametrize("scale", SCALES, ids=str)
@pytest.mark.parametrize("E", [64, 128])
def test_scales_bool_mask(gen, E, scale):
    q, k, v = qkv(gen, B=2, H=2, L=300, S=400, E=E, dtype=torch.bfloat16, device="cuda")
    mask = torch.rand(300, 400, generator=gen) < 0.5
    mask[5] = False  # a row that sees no key
    check("v4_wgmma", q, k, v, scale=scale, mask=mask.cuda(), causal="bottom_right")


@pytest.mark.parametrize("scale", SCALES, ids=str)
@pytest.mark.parametrize("E", [64, 128])
def test_scales_tf32(gen, E, scale):
    q, k, v = qkv(gen, B=1, H=2, L=257, S=300, E=E, device="cuda")
    check("v4_wgmma", q, k, v, scale=scale, causal=True, budget_dtype="tf32", float32_precision="tf32")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
def test_negative_scale_is_the_positive_one_on_minus_q(gen, dtype):
    prec = "tf32" if dtype == torch.float32 else "auto"
    q, k, v = qkv(gen, B=1, H=2, L=200, S=333, E=128, dtype=dtype, device="cuda")
    a = attend("v4_wgmma", q, k, v, scale=-0.25, causal=True, float32_precision=prec)
    b = attend("v4_wgmma", -q, k, v, scale=0.25, causal=True, float32_precision=prec)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
