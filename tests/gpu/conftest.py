"""GPU-only tests take ``cuda_kernel``: every kernel of kernels("cuda"), or one skipping parameter."""
import pytest
import torch

import flash_attn_ext


def pytest_generate_tests(metafunc):
    if "cuda_kernel" not in metafunc.fixturenames:
        return
    names = [k["name"] for k in flash_attn_ext.kernels("cuda")] if torch.cuda.is_available() else []
    if names:
        metafunc.parametrize("cuda_kernel", names)
    else:
        skip = pytest.mark.skip(reason="no CUDA device or kernels")
        metafunc.parametrize("cuda_kernel", [pytest.param(None, id="none", marks=skip)])
