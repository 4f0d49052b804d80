"""Head dims the Hopper rung pads: E == Ev below 256 that is not 64, 128, 192 or 256 runs on the next of them, the
TMA filling the columns past E with zeros (nothing in Q K^T, O columns that are never stored). Through the
persistent, one-item, cross-item and masked kernels, with key and query tails, GQA, both causal alignments,
and outputs whose rows end where E does (a stored padded column would land in the next row)."""
import pytest
import torch

import flash_attn_ext
from support.inputs import qkv
from support.runner import V4_PATHS, check, needs_sm90, on_v4_path

pytestmark = needs_sm90

HEAD_DIMS = [8, 40, 72, 96, 112, 136, 160, 176, 200]


@pytest.mark.parametrize("path", V4_PATHS, ids=[p[0] for p in V4_PATHS])
@pytest.mark.parametrize("E", HEAD_DIMS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_padded_head_dims(gen, monkeypatch, dtype, E, path):
    L, S, causal = on_v4_path(monkeypatch, path)
    q, k, v = qkv(gen, B=2, H=4, Hkv=2, L=L, S=S, E=E, dtype=dtype, device="cuda")
    assert flash_attn_ext.explain(q, k, v, causal=causal)["kernel"] == "v4_wgmma"
    out, _ = check("v4_wgmma", q, k, v, causal=causal)
    assert out.is_contiguous()


@pytest.mark.parametrize("E", [40, 96])
def test_padded_head_dims_with_a_bool_mask(gen, E):
    q, k, v = qkv(gen, B=2, H=2, L=300, S=400, E=E, dtype=torch.bfloat16, device="cuda")
    mask = torch.rand(300, 400, generator=gen) < 0.5
    mask[5] = False
    check("v4_wgmma", q, k, v, mask=mask.cuda(), causal="bottom_right")


def test_padded_head_dim_views_framed_by_nan(gen):
    # q/k/v as views into wider NaN-filled rows: a load past E would bring NaN in.
    q, k, v = qkv(gen, B=1, H=2, L=200, S=333, E=40, dtype=torch.bfloat16, device="cuda")
    views = []
    for t in (q, k, v):
        big = torch.full((*t.shape[:-1], 64), float("nan"), dtype=t.dtype, device=t.device)
        big[..., :40] = t
        views.append(big[..., :40])
    out, _ = check("v4_wgmma", *views, causal=True)
    ref, _ = check("v4_wgmma", q, k, v, causal=True)
    assert torch.equal(out, ref)
