"""A float64 reference in plain PyTorch: the definition every kernel is checked against."""
from __future__ import annotations

import math
from typing import Optional

import torch


def causal_keep(L: int, S: int, causal, device=None) -> Optional[torch.Tensor]:
    """Bool (L, S) with True where query i may see key j under the causal rule (None when not causal)."""
    if causal is False:
        return None
    offset = S - L if causal == "bottom_right" else 0
    i = torch.arange(L, device=device)[:, None]
    j = torch.arange(S, device=device)[None, :]
    return j <= i + offset


def attention_reference(q, k, v, scale=None, mask=None, causal=False, dtype=torch.float64):
    """Returns (out, lse) computed in ``dtype`` (float64 by default) with the library's semantics.

    Accepts ranks 2/3/4 like flash_attention; out has q's rank, lse drops the last dim.
    Rows that see no key give out = 0 and lse = -inf; hidden keys never enter the sum.
    """
    rank = q.dim()
    lead = (None,) * (4 - rank)
    q, k, v = q[lead].to(dtype), k[lead].to(dtype), v[lead].to(dtype)
    B, H, L, E = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    if Hkv != H and Hkv > 0:
        k = k.repeat_interleave(H // Hkv, dim=1)
        v = v.repeat_interleave(H // Hkv, dim=1)
    scale = 1.0 / math.sqrt(E) if scale is None else scale
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    keep = torch.ones(B, H, L, S, dtype=torch.bool, device=q.device)
    if mask is not None:
        if mask.dtype == torch.bool:
            keep = keep & mask
        else:
            bias = mask.to(dtype).expand(B, H, L, S)
            keep = keep & (bias != float("-inf"))
            scores = scores + torch.where(keep, bias, torch.zeros((), dtype=dtype, device=q.device))
    ck = causal_keep(L, S, causal, q.device)
    if ck is not None:
        keep = keep & ck
    scores = scores.masked_fill(~keep, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    probs = torch.exp(scores - torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)[..., None])
    probs = probs.masked_fill(~keep, 0.0)
    vv = torch.where(keep.any(dim=2, keepdim=True).transpose(-1, -2), v, torch.zeros((), dtype=dtype, device=q.device))
    out = torch.matmul(probs, vv)
    out = out.masked_fill(torch.isinf(lse)[..., None] & (lse < 0)[..., None], 0.0)
    shape_out = out.shape[4 - rank :]
    return out.reshape(shape_out), lse.reshape(lse.shape[4 - rank :])
