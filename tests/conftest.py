"""Runs every kernel-level test once per (device, kernel) pair and keeps runs reproducible.

A test that takes ``device`` and ``kernel`` arguments is parametrised over every kernel that
``flash_attn_ext.kernels(device)`` lists: on the CPU always, on CUDA when a GPU is visible. Without a
GPU the CUDA parameter is still generated, and skips, so the summary shows what was not covered.
A test that takes only ``device`` gets the devices alone.
"""
from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

import flash_attn_ext

# Deterministic by default so CI failures reproduce; HYPOTHESIS_PROFILE=fuzz explores more, with new seeds.
settings.register_profile(
    "ci", deadline=None, max_examples=40, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz", deadline=None, max_examples=500, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

NO_GPU = pytest.mark.skip(reason="no CUDA device visible")


def _kernel_params():
    params = [pytest.param("cpu", k["name"], id=f"cpu-{k['name']}") for k in flash_attn_ext.kernels("cpu")]
    if not torch.cuda.is_available():
        return params + [pytest.param("cuda", None, id="cuda", marks=NO_GPU)]
    cuda = flash_attn_ext.kernels("cuda")
    if not cuda:
        # A GPU with a CPU-only build: tests/gpu/test_cuda_only.py fails loudly for that case.
        no_kernels = pytest.mark.skip(reason="build has no CUDA kernels")
        return params + [pytest.param("cuda", None, id="cuda", marks=no_kernels)]
    return params + [pytest.param("cuda", k["name"], id=f"cuda-{k['name']}") for k in cuda]


def _device_params():
    return [
        pytest.param("cpu", id="cpu"),
        pytest.param("cuda", id="cuda", marks=[] if torch.cuda.is_available() else [NO_GPU]),
    ]


def pytest_generate_tests(metafunc):
    names = metafunc.fixturenames
    if "device" in names and "kernel" in names:
        metafunc.parametrize(("device", "kernel"), _kernel_params())
    elif "device" in names:
        metafunc.parametrize("device", _device_params())


@pytest.fixture
def gen():
    """A seeded CPU generator: inputs are drawn on the CPU, then moved, so every device sees the same numbers."""
    return torch.Generator().manual_seed(20240611)
