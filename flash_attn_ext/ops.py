"""Public functions, fake (meta) kernels and the rank/causal normalisation around the C++ ops."""
from __future__ import annotations

from typing import Optional, Union

import torch

from . import _C

Causal = Union[bool, str]
_CAUSAL_CODES = {False: 0, True: 1, "top_left": 1, "bottom_right": 2}


def _causal_code(causal: Causal) -> int:
    # isinstance first: 1 and 0 hash like True and False but are not accepted.
    if isinstance(causal, (bool, str)) and causal in _CAUSAL_CODES:
        return _CAUSAL_CODES[causal]
    raise ValueError(f"flash_attention: causal must be False, True, 'top_left' or 'bottom_right', got {causal!r}")


def _as_scale(scale) -> Optional[float]:
    if scale is None:
        return None
    if isinstance(scale, torch.Tensor) and scale.numel() != 1:
        raise TypeError(f"flash_attention: scale must be a float or None, got a tensor of shape {tuple(scale.shape)}")
    try:
        return float(scale)
    except (TypeError, ValueError):
        raise TypeError(f"flash_attention: scale must be a float or None, got {scale!r}") from None


def _as_4d(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"flash_attention: {name} must be a torch.Tensor, got {type(t).__name__}")
    rank = q.dim()
    if rank not in (2, 3, 4):
        raise ValueError(f"flash_attention: q must be 2-D (L, E), 3-D (H, L, E) or 4-D (B, H, L, E), got shape {tuple(q.shape)}")
    if k.dim() != rank or v.dim() != rank:
        raise ValueError(
            f"flash_attention: q, k, v must have the same rank, got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    lead = (None,) * (4 - rank)
    return q[lead], k[lead], v[lead], rank


def _check_devices(q, k, v, mask):
    for name, t in (("k", k), ("v", v), ("mask", mask)):
        if t is not None and t.device != q.device:
            raise ValueError(f"flash_attention: {name} is on {t.device} but q is on {q.device}; expected one device")


def _check_shapes(q, k, v, mask):
    """The C++ checks that decide output shapes, repeated for fake tensors so tracing rejects what eager rejects."""
    B, H, L, E = q.shape
    Hkv, S, Ev = k.shape[1], k.shape[2], v.shape[3]
    if k.shape[0] != B or v.shape[0] != B or v.shape[1] != Hkv or v.shape[2] != S or k.shape[3] != E:
        raise ValueError(
            f"flash_attention: expected k (B, Hkv, S, E) and v (B, Hkv, S, Ev) to match q {tuple(q.shape)}, "
            f"got k {tuple(k.shape)} and v {tuple(v.shape)}"
        )
    if not (1 <= E <= 256 and 1 <= Ev <= 256):
        raise ValueError(f"flash_attention: head dims E={E}, Ev={Ev} must be in 1..256")
    if Hkv == 0 and H != 0 or Hkv != 0 and H % Hkv != 0:
        raise ValueError(f"flash_attention: q's heads ({H}) must be a multiple of k/v's heads ({Hkv}) for GQA/MQA")
    if mask is not None:
        target = (B, H, L, S)
        shape = tuple(mask.shape)
        if len(shape) > 4 or any(m != 1 and m != t for m, t in zip(shape[::-1], target[::-1])):
            raise ValueError(f"flash_attention: mask of shape {shape} does not broadcast to (B, H, L, S) = {target}")


def _run(q, k, v, scale, mask, causal, return_lse, kernel, float32_precision="auto"):
    q4, k4, v4, rank = _as_4d(q, k, v)
    scale = _as_scale(scale)
    if mask is not None and not isinstance(mask, torch.Tensor):
        raise TypeError(f"flash_attention: mask must be a torch.Tensor or None, got {type(mask).__name__}")
    _check_devices(q4, k4, v4, mask)
    out, lse = torch.ops.flash_attn_ext.fwd(q4, k4, v4, mask, scale, _causal_code(causal), kernel, float32_precision)
    if rank < 4:
        out = out.reshape(out.shape[4 - rank :])
        lse = lse.reshape(lse.shape[4 - rank :])
    return (out, lse) if return_lse else out


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: Optional[float] = None,
    mask: Optional[torch.Tensor] = None,
    causal: Causal = False,
    *,
    return_lse: bool = False,
    kernel: str = "auto",
    float32_precision: str = "auto",
):
    """softmax(scale * q @ k^T + mask) @ v without materialising the score matrix.

    q (B, H, L, E), k (B, Hkv, S, E), v (B, Hkv, S, Ev) -> (B, H, L, Ev); 3-D (H, L, E) and 2-D (L, E) inputs
    keep their rank. H must be a multiple of Hkv (GQA/MQA, as repeat_interleave). ``mask`` is bool
    (True = attend) or floating (added to the scores), broadcastable to (B, H, L, S). ``causal`` is False,
    True / "top_left" (query i sees keys j <= i) or "bottom_right" (j <= i + S - L). Rows that see no key
    give 0 (and LSE -inf). ``return_lse`` also returns the float32 natural-log LSE (B, H, L).
    ``kernel`` picks a kernel by name (see ``kernels()``); "auto" picks the fastest for the inputs.
    ``float32_precision`` says how float32 inputs may use CUDA tensor cores: "auto" (accurate to float32; on
    sm_90, error-compensated fp16 with power-of-two block scales, README "Numerics"), "ieee" (CUDA cores only),
    "3xtf32" (error-compensated TF32) or "tf32" (fastest, ~1e-3 relative error).
    The CPU always computes float32 in IEEE arithmetic.
    """
    return _run(q, k, v, scale, mask, causal, return_lse, kernel, float32_precision)


def naive_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: Optional[float] = None,
    mask: Optional[torch.Tensor] = None,
    causal: Causal = False,
    *,
    return_lse: bool = False,
):
    """The O(L*S)-memory reference in C++: same contract as flash_attention."""
    return _run(q, k, v, scale, mask, causal, return_lse, "naive")


def explain(
    q, k, v, scale=None, mask=None, causal: Causal = False, *, kernel: str = "auto", float32_precision: str = "auto"
) -> dict:
    """Which kernel flash_attention would run on these inputs, and why (nothing is computed)."""
    q4, k4, v4, _ = _as_4d(q, k, v)
    return dict(_C.explain(q4, k4, v4, mask, _as_scale(scale), _causal_code(causal), kernel, float32_precision))


def kernels(device: Optional[str] = None) -> list:
    """Every kernel in this build: dicts with name, device and summary; filter by device ('cpu'/'cuda')."""
    ks = [dict(k) for k in _C.kernels()]
    return [k for k in ks if device is None or k["device"] == device]


def build_info() -> dict:
    """What this build contains: CUDA or not, its archs, the CPU vector ISA in use, torch's version."""
    info = dict(_C.build_info())
    info["torch_version"] = torch.__version__
    return info


@torch.library.register_fake("flash_attn_ext::fwd")
def _fwd_fake(q, k, v, mask, scale, causal, kernel, precision):
    _check_devices(q, k, v, mask)
    _check_shapes(q, k, v, mask)
    B, H, L, _ = q.shape
    Ev = v.shape[-1]
    out = q.new_empty((B, H, L, Ev))
    lse = q.new_empty((B, H, L), dtype=torch.float32)
    return out, lse


@torch.library.register_fake("flash_attn_ext::bwd")
def _bwd_fake(dout, q, k, v, out, lse, dlse, mask, scale, causal, kernel, mask_grad, precision="auto"):
    B, H, L, _ = q.shape
    S = k.shape[2]
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    dscores = q.new_empty((B, H, L, S) if mask_grad else (0,), dtype=acc if mask_grad else torch.float32)
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), dscores


def _reduce_to_mask(dscores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sums dS (B, H, L, S) over the dims the mask was broadcast along, back to the mask's shape."""
    lead = dscores.dim() - mask.dim()
    grad = dscores.sum(dim=tuple(range(lead))) if lead else dscores
    dims = tuple(d for d in range(mask.dim()) if mask.shape[d] == 1 and grad.shape[d] != 1)
    if dims:
        grad = grad.sum(dim=dims, keepdim=True)
    return grad.to(mask.dtype)


def _setup_context(ctx, inputs, output):
    q, k, v, mask, scale, causal, kernel, precision = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, mask)
    ctx.scale, ctx.causal, ctx.kernel, ctx.precision = scale, causal, kernel, precision
    ctx.mask_grad = mask is not None and mask.dtype != torch.bool and ctx.needs_input_grad[3]


def _backward(ctx, dout, dlse):
    q, k, v, out, lse, mask = ctx.saved_tensors
    dq, dk, dv, dscores = torch.ops.flash_attn_ext.bwd(
        dout, q, k, v, out, lse, dlse, mask, ctx.scale, ctx.causal, ctx.kernel, ctx.mask_grad, ctx.precision
    )
    dmask = _reduce_to_mask(dscores, mask) if ctx.mask_grad else None
    return dq, dk, dv, dmask, None, None, None, None


torch.library.register_autograd("flash_attn_ext::fwd", _backward, setup_context=_setup_context)
