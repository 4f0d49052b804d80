"""Random inputs drawn on the CPU from a seeded generator, then cast and moved, plus odd layouts of them."""
from __future__ import annotations

import torch

HALF_DTYPES = (torch.float16, torch.bfloat16)
ALL_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def randn(shape, gen, dtype=torch.float32, device="cpu", std=1.0):
    # Drawn in float32 whatever the dtype, so one seed gives the same numbers in every dtype and on every device.
    return (torch.randn(shape, generator=gen) * std).to(dtype=dtype, device=device)


def qkv(gen, B=2, H=3, L=37, S=70, E=16, Ev=None, Hkv=None, dtype=torch.float32, device="cpu", std=1.0):
    Hkv = H if Hkv is None else Hkv
    Ev = E if Ev is None else Ev
    q = randn((B, H, L, E), gen, dtype, device, std)
    k = randn((B, Hkv, S, E), gen, dtype, device, std)
    v = randn((B, Hkv, S, Ev), gen, dtype, device)
    return q, k, v


def bool_mask(shape, gen, keep=0.7, device="cpu"):
    return (torch.rand(shape, generator=gen) < keep).to(device)


def float_mask(shape, gen, dtype=torch.float32, device="cpu", hide=0.2):
    """Random biases with about ``hide`` of them -inf (hidden keys)."""
    bias = torch.randn(shape, generator=gen) * 2
    bias = bias.masked_fill(torch.rand(shape, generator=gen) < hide, float("-inf"))
    return bias.to(dtype=dtype, device=device)


def poisoned_view(t: torch.Tensor, pad: int = 3, fill=float("nan")) -> torch.Tensor:
    """The same values as ``t``, as a view into a larger buffer whose every element outside the view is
    ``fill``: a kernel that reads one element past any edge (or uses the wrong stride) picks up NaN."""
    big = torch.full([n + 2 * pad for n in t.shape], fill, dtype=t.dtype, device=t.device)
    view = big[tuple(slice(pad, pad + n) for n in t.shape)]
    view.copy_(t)
    return view


def transposed_storage(t: torch.Tensor) -> torch.Tensor:
    """``t``'s values with L and H swapped in memory ((B, L, H, E) storage, the usual projection layout)."""
    return t.transpose(1, 2).contiguous().transpose(1, 2)


def last_dim_strided(t: torch.Tensor) -> torch.Tensor:
    """``t``'s values with a last-dim stride != 1 (the library copies such inputs once)."""
    return t.transpose(-1, -2).contiguous().transpose(-1, -2)
