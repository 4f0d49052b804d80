"""scale: None means 1/sqrt(E); explicit, 1/E, negative and zero scales follow the same formula."""
import math

import pytest
import torch

from support.inputs import qkv
from support.runner import attend, check


def test_none_is_inverse_sqrt_of_head_dim(device, kernel, gen):
    q, k, v = qkv(gen, L=50, S=60, E=40, Ev=24, device=device)
    a = attend(kernel, q, k, v)
    b = attend(kernel, q, k, v, scale=1 / math.sqrt(40))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = attend(kernel, q, k, v, scale=1 / math.sqrt(24))
    assert not torch.equal(a[0], c[0]), "the default must use q's head dim E, not v's Ev"


@pytest.mark.parametrize("scale", [0.3, 1 / 40, -0.5, 2.0, 1], ids=["0.3", "1_over_E", "negative", "2", "int"])
def test_explicit_scales(device, kernel, gen, scale):
    q, k, v = qkv(gen, L=50, S=60, E=40, device=device)
    check(kernel, q, k, v, scale=scale)


def test_negative_scale_flips_the_scores(device, kernel, gen):
    q, k, v = qkv(gen, L=50, S=60, E=40, device=device)
    a = attend(kernel, q, k, v, scale=-0.25)
    b = attend(kernel, -q, k, v, scale=0.25)
    torch.testing.assert_close(a[0], b[0], rtol=1e-6, atol=1e-6)


def test_zero_scale_averages_v(device, kernel, gen):
    q, k, v = qkv(gen, L=50, S=60, E=40, device=device)
    out, lse = check(kernel, q, k, v, scale=0.0)
    torch.testing.assert_close(out, v.mean(dim=2, keepdim=True).expand_as(out), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(lse, torch.full_like(lse, math.log(60)))
