"""Runs one named kernel. On CUDA a kernel may decline inputs it was not built for (the registry says so
through explain()); such a case skips with the kernel's own reason. On the CPU every kernel takes every
valid input, so nothing is ever skipped there."""
from __future__ import annotations

import pytest
import torch

import flash_attn_ext

from .numerics import assert_matches_reference

# Tests of the Hopper rung's own paths (v4_wgmma takes calls on compute capability 9.0 only).
needs_sm90 = pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability() != (9, 0), reason="needs an sm_90 GPU"
)

# v4's kernels by its routing (launch_template.cuh): (name, L, S, causal, switches). S <= 1024 takes the
# persistent kernel (E = 64 causal: on two CTAs per SM); the one-item grid, which by default takes only long
# sequences, is forced by FLASH_ATTN_EXT_V4_PERSISTENT=0; non-causal 1024 < S <= 4096 takes the cross-item
# kernel at 64 < E <= 128 (the plain persistent kernel at other head dims).
V4_ONE_ITEM = {"FLASH_ATTN_EXT_V4_PERSISTENT": "0"}
V4_PATHS = [
    ("persistent", 300, 257, "bottom_right", {}),
    ("one-item", 1100, 1300, "top_left", V4_ONE_ITEM),
    ("cross-item", 700, 1500, False, {}),
]


# v4's float32 kernels (TF32 and 3xTF32) over the cases where their own loads and layouts could go wrong:
# (B, H, Hkv, L, S, E, causal) with key and query tails, one row, one key, both causal alignments with rows that
# see no key (L > S bottom-right), GQA, E = 64 and 128.
V4_FLOAT32_CASES = [
    (1, 2, 2, 1, 97, 64, False),
    (1, 2, 2, 97, 1, 128, False),
    (2, 3, 3, 113, 1025, 128, False),
    (1, 4, 2, 1025, 113, 64, "top_left"),
    (1, 2, 2, 1025, 113, 128, "bottom_right"),
    (2, 4, 1, 300, 517, 128, "bottom_right"),
    (1, 2, 2, 257, 257, 64, True),
    (1, 1, 1, 2048, 2048, 128, False),
]


def case_ids(cases):
    return ["B{}-H{}-Hkv{}-L{}-S{}-E{}-{}".format(*case) for case in cases]


def on_v4_path(monkeypatch, path):
    """Sets one of V4_PATHS' switches for this test; returns its (L, S, causal)."""
    _, L, S, causal, switches = path
    for name, value in switches.items():
        monkeypatch.setenv(name, value)
    return L, S, causal


def declines(kernel, q, k, v, scale=None, mask=None, causal=False, float32_precision="auto"):
    """Why ``kernel`` will not take these inputs, or None when it takes them."""
    if q.device.type == "cpu":
        return None
    if q.dtype == torch.float64:
        return "float64 is CPU-only"
    try:
        flash_attn_ext.explain(q, k, v, scale, mask, causal, kernel=kernel, float32_precision=float32_precision)
    except ValueError as e:
        return f"{kernel} declines these inputs: {e}"
    return None


def attend(kernel, q, k, v, scale=None, mask=None, causal=False, float32_precision="auto"):
    """(out, lse) from ``kernel`` on the inputs' device."""
    why = declines(kernel, q, k, v, scale, mask, causal, float32_precision)
    if why:
        pytest.skip(why)
    return flash_attn_ext.flash_attention(
        q, k, v, scale, mask, causal, return_lse=True, kernel=kernel, float32_precision=float32_precision
    )


def to(device, *tensors):
    return tuple(None if t is None else t.to(device) for t in tensors)


def check(kernel, q, k, v, scale=None, mask=None, causal=False, budget_dtype=None, float32_precision="auto"):
    """Runs ``kernel`` and holds it to the tolerance rule; returns (out, lse)."""
    out, lse = attend(kernel, q, k, v, scale, mask, causal, float32_precision)
    assert_matches_reference(out, lse, q, k, v, scale, mask, causal, budget_dtype)
    return out, lse
