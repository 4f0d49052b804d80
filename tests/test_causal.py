"""Causal alignment (top-left as SDPA's is_causal, bottom-right for KV caches), alone and with a mask."""
import pytest
import torch

from support.inputs import bool_mask, float_mask, qkv
from support.runner import attend, check

SIZES = [(37, 70), (70, 37), (64, 64), (1, 97), (97, 1), (113, 203), (203, 113), (128, 217), (1025, 1023)]
MODES = [True, "top_left", "bottom_right"]


def _ids(sizes):
    return [f"L{L}-S{S}" for L, S in sizes]


def tril(L, S, offset, device):
    """Built with torch.tril, independently of the library's reference helper."""
    return torch.ones(L, S, dtype=torch.bool, device=device).tril(diagonal=offset)


@pytest.mark.parametrize("causal", MODES, ids=str)
@pytest.mark.parametrize("L,S", SIZES, ids=_ids(SIZES))
def test_causal_matches_reference_and_tril_mask(device, kernel, gen, L, S, causal):
    q, k, v = qkv(gen, B=1, H=2, L=L, S=S, E=32, device=device)
    out, lse = check(kernel, q, k, v, causal=causal)
    offset = S - L if causal == "bottom_right" else 0
    out_m, lse_m = check(kernel, q, k, v, mask=tril(L, S, offset, device))
    torch.testing.assert_close(out, out_m, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(lse, lse_m, rtol=1e-6, atol=1e-6)
    hidden_rows = max(0, -offset)
    assert (out[:, :, :hidden_rows] == 0).all() and (lse[:, :, :hidden_rows] == float("-inf")).all()
    assert (lse[:, :, hidden_rows:] > float("-inf")).all()


def test_true_is_top_left(device, kernel, gen):
    q, k, v = qkv(gen, B=2, H=2, L=70, S=130, device=device)
    a = attend(kernel, q, k, v, causal=True)
    b = attend(kernel, q, k, v, causal="top_left")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_modes_coincide_when_square(device, kernel, gen):
    q, k, v = qkv(gen, B=1, H=2, L=90, S=90, device=device)
    a = attend(kernel, q, k, v, causal="top_left")
    b = attend(kernel, q, k, v, causal="bottom_right")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("causal", ["top_left", "bottom_right"])
@pytest.mark.parametrize("L,S", [(37, 70), (70, 37), (150, 150)], ids=_ids([(37, 70), (70, 37), (150, 150)]))
def test_causal_with_mask(device, kernel, gen, L, S, causal):
    q, k, v = qkv(gen, B=2, H=2, L=L, S=S, device=device)
    check(kernel, q, k, v, mask=bool_mask((2, 1, L, S), gen, device=device), causal=causal)
    check(kernel, q, k, v, mask=float_mask((L, S), gen, device=device), causal=causal)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("causal", MODES, ids=str)
def test_causal_other_dtypes(device, kernel, gen, causal, dtype):
    q, k, v = qkv(gen, B=1, H=2, L=300, S=259, E=64, dtype=dtype, device=device)
    check(kernel, q, k, v, causal=causal)
