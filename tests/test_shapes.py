"""Sequence lengths and head dims that do not fill a tile, E != Ev, ranks 2/3/4 and empty inputs."""
import pytest
import torch

from support.inputs import ALL_DTYPES, qkv, randn
from support.runner import attend, check

ODD = (1, 97, 113, 1025)
PAIRS = [(L, S) for L in ODD for S in ODD] + [
    (113, 203), (128, 217), (108, 256), (1023, 1024), (1024, 1023), (1, 239), (1, 799), (239, 1), (799, 1),
]
OTHER_DTYPE_PAIRS = [(113, 203), (1023, 1024), (1, 799), (97, 1)]
HEAD_DIMS = (1, 3, 8, 16, 32, 40, 59, 64, 80, 96, 111, 128, 160, 192, 256)


@pytest.mark.parametrize("L,S", PAIRS, ids=[f"L{L}-S{S}" for L, S in PAIRS])
def test_odd_lengths(device, kernel, gen, L, S):
    q, k, v = qkv(gen, B=1, H=2, L=L, S=S, E=40, device=device)
    check(kernel, q, k, v)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("L,S", OTHER_DTYPE_PAIRS, ids=[f"L{L}-S{S}" for L, S in OTHER_DTYPE_PAIRS])
def test_odd_lengths_other_dtypes(device, kernel, gen, L, S, dtype):
    q, k, v = qkv(gen, B=1, H=2, L=L, S=S, E=64, dtype=dtype, device=device)
    check(kernel, q, k, v)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("E", HEAD_DIMS)
def test_head_dims(device, kernel, gen, E, dtype):
    q, k, v = qkv(gen, B=1, H=2, L=97, S=203, E=E, dtype=dtype, device=device)
    check(kernel, q, k, v)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("E,Ev", [(1, 256), (256, 1), (3, 111), (59, 40), (64, 128), (128, 64), (80, 8)])
def test_value_head_dim_differs(device, kernel, gen, E, Ev, dtype):
    q, k, v = qkv(gen, B=2, H=2, L=70, S=131, E=E, Ev=Ev, dtype=dtype, device=device)
    out, _ = check(kernel, q, k, v)
    assert out.shape == (2, 2, 70, Ev)


def test_rank_two_and_three_keep_their_rank(device, kernel, gen):
    q, k, v = qkv(gen, B=1, H=4, L=45, S=77, E=24, Ev=12, Hkv=2, device=device)
    out4, lse4 = check(kernel, q, k, v, causal=True)
    out3, lse3 = check(kernel, q[0], k[0], v[0], causal=True)
    assert out3.shape == (4, 45, 12) and lse3.shape == (4, 45)
    out2, lse2 = check(kernel, q[0, 3], k[0, 1], v[0, 1], causal=True)
    assert out2.shape == (45, 12) and lse2.shape == (45,)
    if device == "cuda" and kernel == "naive":
        # The dense reference is ATen's batched matmuls: cuBLAS picks its algorithm by batch shape.
        torch.testing.assert_close(out3, out4[0], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(out2, out4[0, 3], rtol=1e-6, atol=1e-6)
        return
    assert torch.equal(out3, out4[0]) and torch.equal(lse3, lse4[0])
    assert torch.equal(out2, out4[0, 3]) and torch.equal(lse2, lse4[0, 3])


@pytest.mark.parametrize(
    "B,H,Hkv,L,S", [(0, 2, 2, 5, 7), (2, 2, 1, 0, 7), (2, 2, 2, 5, 0), (0, 2, 2, 0, 0), (2, 0, 0, 5, 7)],
    ids=["B0", "L0", "S0", "B0-L0-S0", "H0"],
)
def test_empty_inputs(device, kernel, gen, B, H, Hkv, L, S):
    q = randn((B, H, L, 8), gen, device=device)
    k = randn((B, Hkv, S, 8), gen, device=device)
    v = randn((B, Hkv, S, 5), gen, device=device)
    out, lse = attend(kernel, q, k, v)
    assert out.shape == (B, H, L, 5) and lse.shape == (B, H, L)
    assert out.dtype == q.dtype and lse.dtype == torch.float32
    assert (out == 0).all() and (lse == float("-inf")).all()


def test_empty_key_set_with_mask_and_causal(device, kernel, gen):
    q, k, v = qkv(gen, B=1, H=2, L=6, S=0, E=8, device=device)
    out, lse = attend(kernel, q, k, v, mask=torch.ones(6, 0, dtype=torch.bool, device=device), causal="bottom_right")
    assert out.shape == (1, 2, 6, 8) and (out == 0).all() and (lse == float("-inf")).all()
