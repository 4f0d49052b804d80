"""Numerically hard inputs: logits around 1e4, values near the float16 limit, and the LSE itself."""
import math

import pytest
import torch

from support.inputs import HALF_DTYPES, bool_mask, qkv, randn
from support.runner import attend, check

DTYPES = [torch.float32, *HALF_DTYPES]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("causal", [False, "bottom_right"], ids=str)
def test_logits_around_1e4_stay_finite_and_accurate(device, kernel, gen, dtype, causal):
    # q.k has std sqrt(64) = 8; scale 420 puts the logits at ~3e3 std, ~1.5e4 at the extremes. A kernel
    # without max-subtraction overflows exp(); one with a half-precision accumulator loses the answer.
    q, k, v = qkv(gen, B=1, H=2, L=113, S=203, E=64, dtype=dtype, device=device)
    _, lse = check(kernel, q, k, v, scale=420.0, causal=causal, budget_dtype=torch.float32)
    assert lse.abs().max() > 5e3


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
@pytest.mark.parametrize("n", [1, 2, 5, 17, 128])
def test_short_sequences_with_grown_logits(device, kernel, gen, n, dtype):
    # q x5 and k x3 (the tail-block case from FlashAttention's suite): single, partial and exactly full tiles.
    q, k, v = qkv(gen, B=2, H=2, L=n, S=n, E=64, dtype=dtype, device=device)
    check(kernel, q * 5, k * 3, v, causal=True, budget_dtype=torch.float32)
    check(kernel, q * 5, k * 3, v, budget_dtype=torch.float32)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("causal", [False, True], ids=str)
@pytest.mark.parametrize("E", [64, 128])
def test_running_max_that_climbs_along_the_keys(device, kernel, gen, dtype, causal, E):
    # Every score gets ramp[key]: +30 over the keys (about 4 in exp2 units per 64 keys) and a jump of 40 halfway,
    # so a row's maximum keeps rising. The tensor-core rungs let their running max lag by up to 8 in exp2 units
    # (a lazy rescale); whether it moves or not, the result must be the same.
    L, S = 70, 700
    q, k, v = qkv(gen, B=1, H=2, L=L, S=S, E=E, dtype=dtype, device=device)
    ramp = torch.linspace(0.0, 30.0, S)
    ramp[S // 2 :] += 40.0
    q[..., 0] = 1.0
    k[..., 0] = (ramp * math.sqrt(E)).to(dtype).to(device)
    check(kernel, q, k, v, causal=causal, budget_dtype=torch.float32)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_large_float_mask_values(device, kernel, gen, dtype):
    q, k, v = qkv(gen, B=1, H=2, L=64, S=130, dtype=dtype, device=device)
    bias = (torch.randn(64, 130, generator=gen) * 1e4).to(device)
    check(kernel, q, k, v, mask=bias, budget_dtype=torch.float32)


def test_values_near_float16_max_do_not_overflow(device, kernel, gen):
    q, k, _ = qkv(gen, B=1, H=2, L=50, S=300, dtype=torch.float16, device=device)
    v = torch.where(torch.rand(1, 2, 300, 32, generator=gen) < 0.5, 6.0e4, -6.0e4).to(torch.float16).to(device)
    v[..., 0] = 6.0e4  # a column where every value is the same: the output is exactly that value
    out, _ = check(kernel, q, k, v)
    assert torch.isfinite(out).all() and (out[..., 0] == 6.0e4).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=str)
def test_lse_is_torch_logsumexp_of_the_scores(device, kernel, gen, dtype):
    B, H, Hkv, L, S, E = 2, 4, 2, 45, 150, 24
    q, k, v = qkv(gen, B=B, H=H, Hkv=Hkv, L=L, S=S, E=E, dtype=dtype, device=device)
    keep = bool_mask((B, 1, L, S), gen, keep=0.5, device=device)
    keep[1, 0, 7] = False
    _, lse = attend(kernel, q, k, v, scale=0.7, mask=keep, causal=True)
    kk = k.double().cpu().repeat_interleave(H // Hkv, dim=1)
    scores = 0.7 * q.double().cpu() @ kk.transpose(-1, -2)
    visible = keep.cpu() & torch.ones(L, S, dtype=torch.bool).tril()
    want = torch.logsumexp(scores.masked_fill(~visible, float("-inf")), dim=-1)
    assert lse.dtype == torch.float32 and lse.shape == (B, H, L)
    assert (lse[1, :, 7] == float("-inf")).all()
    finite = torch.isfinite(want)
    torch.testing.assert_close(lse.cpu().double()[finite], want[finite], rtol=1e-5, atol=1e-5)
    assert torch.equal(torch.isfinite(lse.cpu()), finite)


def test_single_key_returns_its_value_exactly(device, kernel, gen):
    q, k, v = qkv(gen, B=2, H=2, L=33, S=1, E=16, Ev=9, device=device)
    out, lse = attend(kernel, q, k, v)
    if device == "cuda" and kernel == "v3_mma":
        # float32 through 3xTF32: V is split into two TF32 halves that keep 22 of its 24 significand bits.
        torch.testing.assert_close(out, v.expand_as(out), rtol=2**-21, atol=0)
    else:
        assert torch.equal(out, v.expand_as(out))
    torch.testing.assert_close(lse, (q @ k.transpose(-1, -2)).squeeze(-1) / math.sqrt(16), rtol=1e-6, atol=1e-6)


def test_identical_keys_average_values(device, kernel, gen):
    # All scores in a row are equal: the output is the plain mean of V whatever the logit size.
    q = randn((1, 1, 20, 8), gen, device=device) * 100
    k = randn((1, 1, 1, 8), gen, device=device).expand(1, 1, 257, 8)
    v = randn((1, 1, 257, 5), gen, device=device)
    out, _ = attend(kernel, q, k, v)
    torch.testing.assert_close(out, v.mean(dim=2, keepdim=True).expand_as(out), rtol=1e-5, atol=1e-5)
