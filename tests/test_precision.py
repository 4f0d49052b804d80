"""float32_precision: how float32 inputs may use CUDA tensor cores. "auto", "ieee" and "3xtf32" must be
accurate to float32 (the 1e-5 rule); "tf32" gets the budget of PyTorch's own TF32 matmuls. The CPU always
computes in IEEE float32, so there every setting gives the same bits. Half-precision inputs ignore it."""
import pytest
import torch

import flash_attn_ext
from support.inputs import bool_mask, qkv
from support.runner import attend, check

ACCURATE = ["auto", "ieee", "3xtf32"]
ALL = ACCURATE + ["tf32"]
SIZES = [(113, 203, 64), (1023, 1024, 128), (97, 97, 59)]


@pytest.mark.parametrize("precision", ACCURATE)
@pytest.mark.parametrize("L,S,E", SIZES, ids=[f"L{L}-S{S}-E{E}" for L, S, E in SIZES])
def test_accurate_float32_settings(device, kernel, gen, L, S, E, precision):
    q, k, v = qkv(gen, B=1, H=2, L=L, S=S, E=E, device=device)
    check(kernel, q, k, v, causal="bottom_right", float32_precision=precision)


def test_tf32_within_pytorch_tf32_budget(device, kernel, gen):
    q, k, v = qkv(gen, B=1, H=2, L=300, S=517, E=128, device=device)
    mask = bool_mask((300, 517), gen, device=device)
    if device == "cpu":
        check(kernel, q, k, v, mask=mask, float32_precision="tf32")
        return
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True  # the budget: PyTorch's float32 reference with TF32 matmuls
    try:
        check(kernel, q, k, v, mask=mask, budget_dtype=torch.float32, float32_precision="tf32")
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


def test_cpu_ignores_the_setting(gen):
    q, k, v = qkv(gen, B=1, H=2, L=70, S=130, E=40)
    for kernel in [x["name"] for x in flash_attn_ext.kernels("cpu")]:
        base = attend(kernel, q, k, v, float32_precision="auto")
        for precision in ALL[1:]:
            got = attend(kernel, q, k, v, float32_precision=precision)
            assert torch.equal(got[0], base[0]) and torch.equal(got[1], base[1]), (kernel, precision)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_inputs_ignore_the_setting(device, kernel, gen, dtype):
    q, k, v = qkv(gen, B=1, H=2, L=70, S=130, E=40, dtype=dtype, device=device)
    base = attend(kernel, q, k, v)
    for precision in ALL[1:]:
        got = attend(kernel, q, k, v, float32_precision=precision)
        assert torch.equal(got[0], base[0]) and torch.equal(got[1], base[1]), precision
