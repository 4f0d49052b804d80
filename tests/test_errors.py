"""Bad input raises a ValueError/TypeError whose message names the offending argument (never a crash,
never a silent result)."""
import pytest
import torch

import flash_attn_ext


def _t(*shape, dtype=torch.float32, device="cpu"):
    if dtype.is_floating_point:
        return torch.randn(shape, device=device).to(dtype)
    return torch.zeros(shape, dtype=dtype, device=device)


def _qkv(d, q=(4, 8), k=(4, 8), v=(4, 8), **kwargs):
    """Arguments of one call: shapes (or ready-made objects) for q, k, v, and keyword arguments."""
    args = tuple(_t(*x, device=d) if isinstance(x, tuple) else x for x in (q, k, v))
    return args, kwargs


def _int(d):
    return _t(4, 8, dtype=torch.int32, device=d)


# name -> (build(device) -> (args, kwargs), regex the message must contain)
CASES = {
    "q-not-tensor": (lambda d: _qkv(d, q=[[1.0]]), r"\bq\b"),
    "k-not-tensor": (lambda d: _qkv(d, k=3.0), r"\bk\b"),
    "v-not-tensor": (lambda d: _qkv(d, v=None), r"\bv\b"),
    "mask-not-tensor": (lambda d: _qkv(d, mask=[[True] * 4] * 4), r"\bmask\b"),
    "rank-1": (lambda d: _qkv(d, q=(8,), k=(8,), v=(8,)), r"\bq\b.*\(8,\)"),
    "rank-5": (lambda d: _qkv(d, q=(1, 1, 1, 4, 8), k=(1, 1, 1, 4, 8), v=(1, 1, 1, 4, 8)), r"\bq\b"),
    "rank-mismatch": (lambda d: _qkv(d, q=(1, 4, 8)), r"\bk\b.*rank|rank.*\bk\b"),
    "int-inputs": (lambda d: _qkv(d, q=_int(d), k=_int(d), v=_int(d)), r"\bq\b.*dtype"),
    "dtype-mismatch": (lambda d: _qkv(d, k=_t(4, 8, dtype=torch.float16, device=d)), r"\bk\b.*Half"),
    "batch-mismatch": (lambda d: _qkv(d, q=(2, 1, 4, 8), k=(3, 1, 4, 8), v=(3, 1, 4, 8)), r"batch"),
    "kv-heads-mismatch": (lambda d: _qkv(d, q=(4, 4, 8), k=(2, 4, 8), v=(1, 4, 8)), r"heads.*\bk\b.*\bv\b"),
    "kv-length-mismatch": (lambda d: _qkv(d, k=(5, 8), v=(6, 8)), r"\bk\b.*\bv\b"),
    "qk-head-dim-mismatch": (lambda d: _qkv(d, k=(4, 7)), r"\bq\b.*\bk\b"),
    "heads-not-multiple": (lambda d: _qkv(d, q=(6, 4, 8), k=(4, 4, 8), v=(4, 4, 8)), r"heads.*\(6\).*\(4\)"),
    "E-too-big": (lambda d: _qkv(d, q=(4, 257), k=(4, 257)), r"head dim E.*257"),
    "E-zero": (lambda d: _qkv(d, q=(4, 0), k=(4, 0)), r"head dim E.*\b0\b"),
    "Ev-too-big": (lambda d: _qkv(d, v=(4, 257)), r"\bEv\b.*257"),
    "Ev-zero": (lambda d: _qkv(d, v=(4, 0)), r"\bEv\b.*\b0\b"),
    "causal-bad-string": (lambda d: _qkv(d, causal="lower_right"), r"causal.*lower_right"),
    "causal-int": (lambda d: _qkv(d, causal=1), r"\bcausal\b"),
    "causal-none": (lambda d: _qkv(d, causal=None), r"\bcausal\b"),
    "mask-not-broadcastable": (lambda d: _qkv(d, mask=_t(3, 4, device=d)), r"\bmask\b.*\[3, 4\]"),
    "mask-too-many-dims": (lambda d: _qkv(d, mask=_t(1, 1, 1, 4, 4, device=d)), r"\bmask\b"),
    "mask-batch-too-big": (lambda d: _qkv(d, q=(1, 4, 8), k=(1, 4, 8), v=(1, 4, 8), mask=_t(2, 1, 4, 4, device=d)),
                           r"\bmask\b"),
    "mask-int": (lambda d: _qkv(d, mask=_t(4, 4, dtype=torch.int32, device=d)), r"\bmask\b.*Int"),
    "kernel-unknown": (lambda d: _qkv(d, kernel="fastest"), r"kernel.*fastest"),
    "precision-unknown": (lambda d: _qkv(d, float32_precision="fp64"), r"float32_precision.*fp64"),
    "scale-nan": (lambda d: _qkv(d, scale=float("nan")), r"\bscale\b"),
    "scale-inf": (lambda d: _qkv(d, scale=float("inf")), r"\bscale\b"),
    "scale-not-a-number": (lambda d: _qkv(d, scale="abc"), r"\bscale\b"),
    "k-on-meta-device": (lambda d: _qkv(d, k=_t(4, 8, device="meta")), r"\bk\b.*meta"),
    "mask-on-meta-device": (lambda d: _qkv(d, mask=_t(4, 4, device="meta")), r"\bmask\b.*meta"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_names_the_argument(device, kernel, case):
    build, names = CASES[case]
    args, kwargs = build(device)
    with pytest.raises((ValueError, TypeError, RuntimeError), match=names) as info:
        flash_attn_ext.flash_attention(*args, kernel=kwargs.pop("kernel", kernel), **kwargs)
    assert "flash_attention" in str(info.value), f"message does not say who complained: {info.value}"


EXPLAIN_CASES = ["rank-5", "heads-not-multiple", "mask-not-broadcastable", "causal-bad-string", "kernel-unknown"]


@pytest.mark.parametrize("case", EXPLAIN_CASES)
def test_explain_rejects_what_flash_attention_rejects(device, case):
    build, names = CASES[case]
    args, kwargs = build(device)
    with pytest.raises((ValueError, TypeError), match=names):
        flash_attn_ext.explain(*args, **kwargs)


def test_errors_leave_no_partial_state(device, kernel):
    good = _t(2, 16, 64, device=device)
    if device == "cuda":
        good = good.half()  # every CUDA rung takes half at E = 64
    with pytest.raises(ValueError):
        flash_attn_ext.flash_attention(good, good, good, mask=_t(3, 3, device=device), kernel=kernel)
    out = flash_attn_ext.flash_attention(good, good, good, kernel=kernel)
    assert out.shape == good.shape and not out.isnan().any()


def test_backward_op_rejects_a_grad_of_lse_of_the_wrong_shape(device):
    # The op is public (torch.ops.flash_attn_ext.bwd): a dlse that does not match lse must be refused
    # by name, not read out of bounds by the backward's pre-pass.
    q = _t(1, 2, 5, 8, device=device)
    out, lse = torch.ops.flash_attn_ext.fwd(q, q, q, None, None, 0, "auto", "auto")
    with pytest.raises(ValueError, match=r"grad of lse.*1, 2, 5.*1, 2, 3"):
        torch.ops.flash_attn_ext.bwd(out, q, q, q, out, lse, lse[..., :3], None, None, 0, "auto", False, "auto")
