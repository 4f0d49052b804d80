"""Scores that rise (or fall) steadily along the keys, on the Hopper rung. After a row's first key tile, v4's
16-bit kernels run the softmax against the running max without taking each tile's max, and compute a tile
again on the full path when one of its scores passes the running max by more than 15 in exp2 units
(softmax.cuh, exps_at_running_max; kernel.cuh, attend). Random inputs almost never reach that fallback: here
every key's score lies `step` exp2 units above the previous key's, so a gentle rise runs the fast path with
probabilities up to 2^15 before the max moves, a steep one sends nearly every tile down the fallback, and a
falling one keeps every later tile far below the first. Through each kernel path of V4_PATHS (E = 64 causal
persistent: the two-CTA loop without overlap)."""
import math

import pytest
import torch

from support.runner import V4_PATHS, check, needs_sm90, on_v4_path

pytestmark = needs_sm90

STEPS = [0.05, 0.5, -0.5]  # exp2 units per key


def rising_qkv(gen, B, H, L, S, E, step, dtype):
    """q . k_j * scale * log2(e) = step * j along one direction u, plus noise of about one unit."""
    u = torch.randn(E, generator=gen)
    u /= u.norm()
    per_key = step / (E**-0.5 * math.log2(math.e)) / math.sqrt(E)  # k's length along u per key, q . u = sqrt(E)
    q = 0.3 * torch.randn(B, H, L, E, generator=gen) + math.sqrt(E) * u
    k = 0.3 * torch.randn(B, H, S, E, generator=gen) + (per_key * torch.arange(S)).view(1, 1, S, 1) * u
    v = torch.randn(B, H, S, E, generator=gen)
    return (x.to(dtype).cuda() for x in (q, k, v))


@pytest.mark.parametrize("step", STEPS, ids=str)
@pytest.mark.parametrize("path", V4_PATHS, ids=[p[0] for p in V4_PATHS])
@pytest.mark.parametrize("E", [64, 128, 256])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_rising_scores(gen, monkeypatch, dtype, E, path, step):
    L, S, causal = on_v4_path(monkeypatch, path)
    q, k, v = rising_qkv(gen, B=1, H=2, L=L, S=S, E=E, step=step, dtype=dtype)
    out, lse = check("v4_wgmma", q, k, v, causal=causal)
    assert torch.isfinite(out).all()
