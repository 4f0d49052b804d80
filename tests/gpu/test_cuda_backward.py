"""The CUDA backwards (csrc/cuda/kernels/bwd_mma, bwd_wgmma on sm_90, bwd_simple) against float64 autograd
of the reference.

Odd sizes (tails in every tile), head dims that need padding, every mask broadcast, both causal
alignments with L < S and L > S, GQA/MQA, non-contiguous inputs and gradients, fully masked rows,
deterministic mode, and grids past the 65535 limit. Head dims above 128, float32_precision='ieee'
(and devices below sm80) go to the CUDA-core backward bwd_simple (kernels/bwd_simple), tested at the
end of this file, also on every CASES shape through FLASH_ATTN_EXT_BWD_SIMPLE=force. Error bound (DESIGN.md §3): 3 x the error of plain PyTorch doing the same math
in the input dtype, plus the dtype's rounding floor of max |ref|. float32 (the TF32 / 3xTF32 kernels of
bwd_mma): "auto"/"3xtf32" must be accurate to float32, i.e. within the float32 rule of
tests/support/numerics.py (1e-5 x max |ref|) or 3 x plain PyTorch float32's error plus an ulp, whichever
is larger; "tf32" gets 3 x the error of PyTorch's float32 autograd with TF32 matmuls (on the GPU) plus
float32's ulp, as the forward's TF32 test takes PyTorch's TF32 budget, or 8 x 2^-11 x max |ref| where that is
larger (cuBLAS keeps small GEMMs in float32)."""
import pytest
import torch

import flash_attn_ext as fae
from flash_attn_ext.reference import attention_reference

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible"),
]


@pytest.fixture
def mma_variant(monkeypatch):
    """Pins bwd_mma (dK/dV kernel v5): on sm_90 the default backward is bwd_wgmma where it applies."""
    monkeypatch.setenv("FLASH_ATTN_EXT_BWD_VARIANT", "v5")


def _rand(shape, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float32).to(dtype)


def _mask(kind, B, H, L, S, seed=7):
    g = torch.Generator().manual_seed(seed)
    if kind is None:
        return None
    shape = {"LS": (L, S), "B1LS": (B, 1, L, S), "H1S": (H, 1, S), "BHLS": (B, H, L, S), "1S": (1, S)}[kind[1]]
    if kind[0] == "bool":
        return torch.rand(shape, generator=g) > 0.3
    bias = torch.randn(shape, generator=g) * 2
    return bias.masked_fill(torch.rand(shape, generator=g) < 0.2, float("-inf"))


def _grads(fn, inputs, w_out, w_lse, out_transposed=False):
    out, lse = fn(*inputs)
    o = out.transpose(1, 2) if out_transposed else out
    loss = (o.double() * w_out).sum() + (lse.double() * w_lse).sum()
    return torch.autograd.grad(loss, [t for t in inputs if t is not None and t.requires_grad])


def _check(B, H, Hkv, L, S, E, Ev, mask_kind, causal, dtype, layout="contiguous", mask_grad=False, precision="auto"):
    q0, k0, v0 = _rand((B, H, L, E), 1, dtype), _rand((B, Hkv, S, E), 2, dtype), _rand((B, Hkv, S, Ev), 3, dtype)
    m0 = _mask(mask_kind, B, H, L, S)
    w_out = _rand((B, L, H, Ev) if layout == "strided" else (B, H, L, Ev), 4, torch.float64)
    w_lse = _rand((B, H, L), 5, torch.float64)

    def leaf(t, device):
        t = t.to(device)
        if layout == "strided" and device == "cuda":
            t = t.transpose(1, 2).contiguous().transpose(1, 2)  # (B, L, H, E) storage
        return t.detach().requires_grad_(True)

    mask_c = None if m0 is None else m0.to("cuda").requires_grad_(mask_grad)
    mask_r = None if m0 is None else m0.double().requires_grad_(mask_grad) if m0.dtype != torch.bool else m0
    ins_c = (leaf(q0, "cuda"), leaf(k0, "cuda"), leaf(v0, "cuda"), mask_c)
    ins_r = (leaf(q0, "cpu"), leaf(k0, "cpu"), leaf(v0, "cpu"), mask_r)
    ins_l = (leaf(q0, "cpu"), leaf(k0, "cpu"), leaf(v0, "cpu"), mask_r)
    tr = layout == "strided"
    ours = _grads(lambda q, k, v, m: fae.flash_attention(q, k, v, mask=m, causal=causal, return_lse=True,
                                                         float32_precision=precision),
                  ins_c, w_out.cuda(), w_lse.cuda(), tr)
    ref = _grads(lambda q, k, v, m: attention_reference(q, k, v, mask=m, causal=causal), ins_r, w_out, w_lse, tr)
    tf32 = dtype == torch.float32 and precision == "tf32"
    if tf32:
        # The budget: PyTorch's float32 autograd with TF32 matmuls, on the GPU.
        ins_g = (leaf(q0, "cuda"), leaf(k0, "cuda"), leaf(v0, "cuda"),
                 None if m0 is None else m0.to("cuda").double().requires_grad_(mask_grad) if m0.dtype != torch.bool
                 else m0.to("cuda"))
        saved = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            low = _grads(lambda q, k, v, m: attention_reference(q, k, v, mask=m, causal=causal, dtype=dtype),
                         ins_g, w_out.cuda(), w_lse.cuda(), tr)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = saved
    else:
        low = _grads(lambda q, k, v, m: attention_reference(q, k, v, mask=m, causal=causal, dtype=dtype),
                     ins_l, w_out, w_lse, tr)
    for name, a, r, lo in zip("qkvm", ours, ref, low):
        a = a.double().cpu()
        assert torch.isfinite(a).all(), f"d{name} has non-finite values"
        amax = r.abs().max().item()
        err = (a - r).abs().max().item()
        bound = 3 * (lo.double().cpu() - r).abs().max().item() + torch.finfo(dtype).eps * amax
        if dtype == torch.float32 and not tf32:
            bound = max(bound, 1e-5 * amax)  # the float32 rule (tests/support/numerics.py)
        if tf32:
            # cuBLAS does not take TF32 for every shape (tiny GEMMs stay float32), so PyTorch's error alone could
            # collapse to float32's: TF32 also gets 8 units of its own rounding (2^-11) of max |ref|.
            bound = max(bound, 8 * 2.0**-11 * amax)
        assert err <= bound, f"d{name}: max error {err:.3e} > {bound:.3e} (max |ref| {amax:.3e})"
    return ours


CASES = [
    # (B, H, Hkv, L, S, E, Ev, mask, causal)
    (1, 2, 2, 1, 1, 8, 8, None, False),
    (2, 4, 2, 97, 113, 40, 40, None, False),
    (1, 2, 1, 113, 97, 59, 33, ("bool", "LS"), True),
    (1, 3, 3, 97, 1025, 80, 80, ("bool", "B1LS"), "bottom_right"),
    (2, 2, 1, 1025, 97, 111, 111, ("float", "H1S"), "bottom_right"),
    (1, 2, 2, 130, 70, 64, 64, ("float", "BHLS"), "top_left"),
    (1, 8, 1, 200, 333, 128, 128, None, True),
    (2, 2, 2, 64, 128, 32, 96, ("bool", "BHLS"), False),
    (1, 2, 2, 77, 1, 16, 16, ("float", "1S"), "bottom_right"),
    (1, 4, 2, 257, 190, 128, 64, None, "bottom_right"),
    (1, 2, 2, 100, 90, 256, 256, None, False),  # above the 128 bucket: bwd_simple
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)).replace("'", "").replace(" ", ""))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_mma_backward_matches_float64(case, dtype, mma_variant):
    _check(*case, dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_mma_backward_strided_inputs_and_grad(dtype, mma_variant):
    _check(2, 4, 2, 150, 203, 64, 64, ("bool", "LS"), True, dtype, layout="strided")


def test_mma_backward_float_mask_gradient(mma_variant):
    _check(1, 4, 2, 130, 97, 64, 64, ("float", "H1S"), "bottom_right", torch.bfloat16, mask_grad=True)
    _check(2, 2, 2, 70, 65, 40, 40, ("float", "BHLS"), False, torch.float16, mask_grad=True)


def test_mma_backward_fully_masked_rows_are_zero(mma_variant):
    q = torch.randn(1, 2, 70, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(1, 2, 90, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(1, 2, 90, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    mask = torch.rand(70, 90, device="cuda") > 0.5
    mask[3] = False
    mask[:, 5] = False
    with torch.no_grad():
        v[0, :, 5] = float("nan")  # a key nobody sees must not leak NaN into any gradient
    fae.flash_attention(q, k, v, mask=mask).float().square().sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert q.grad[:, :, 3].abs().max() == 0
    assert k.grad[:, :, 5].abs().max() == 0


def test_mma_backward_deterministic_mode_is_bitwise_and_accurate(mma_variant):
    was = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True)
        first = _check(2, 4, 2, 300, 517, 64, 64, ("bool", "B1LS"), "bottom_right", torch.bfloat16)
        for _ in range(3):
            again = _check(2, 4, 2, 300, 517, 64, 64, ("bool", "B1LS"), "bottom_right", torch.bfloat16)
            for a, b in zip(first, again):
                assert torch.equal(a, b)
        _check(1, 4, 1, 97, 113, 59, 33, ("float", "H1S"), True, torch.float16)
    finally:
        torch.use_deterministic_algorithms(was)


def test_mma_backward_many_heads_beyond_grid_limit(mma_variant):
    B, H, L, S, E = 1, 70000, 5, 9, 16
    q = torch.randn(B, H, L, E, device="cuda", dtype=torch.float16, requires_grad=True)
    k = torch.randn(B, H, S, E, device="cuda", dtype=torch.float16, requires_grad=True)
    v = torch.randn(B, H, S, E, device="cuda", dtype=torch.float16, requires_grad=True)
    ours = torch.autograd.grad(fae.flash_attention(q, k, v, causal=True).float().sum(), (q, k, v))
    ref = torch.autograd.grad(fae.flash_attention(q, k, v, causal=True, kernel="naive").float().sum(), (q, k, v))
    for a, r in zip(ours, ref):
        torch.testing.assert_close(a.float(), r.float(), atol=2e-2, rtol=2e-2)


def test_mma_backward_block_sparse_mask(mma_variant):
    """Whole (query block, key block) tiles hidden by a bool mask: those dQ steps are skipped."""
    B, H, L, S, E = 1, 2, 200, 300, 64
    q = torch.randn(B, H, L, E, dtype=torch.bfloat16)
    k = torch.randn(B, H, S, E, dtype=torch.bfloat16)
    v = torch.randn(B, H, S, E, dtype=torch.bfloat16)
    mask = torch.rand(L, S, generator=torch.Generator().manual_seed(3)) > 0.2
    mask[64:128, :128] = False
    mask[128:, 128:256] = False
    mask[150] = False
    ins_c = [t.cuda().requires_grad_(True) for t in (q, k, v)]
    ins_r = [t.clone().requires_grad_(True) for t in (q, k, v)]
    ins_l = [t.clone().requires_grad_(True) for t in (q, k, v)]
    w = torch.randn(B, H, L, E, dtype=torch.float64)
    ours = torch.autograd.grad((fae.flash_attention(*ins_c, mask=mask.cuda()).double() * w.cuda()).sum(), ins_c)
    ref = torch.autograd.grad((attention_reference(*ins_r, mask=mask)[0] * w).sum(), ins_r)
    low = torch.autograd.grad(
        (attention_reference(*ins_l, mask=mask, dtype=torch.bfloat16)[0].double() * w).sum(), ins_l
    )
    for name, a, r, lo in zip("qkv", ours, ref, low):
        a = a.double().cpu()
        err = (a - r).abs().max().item()
        bound = 3 * (lo.double() - r).abs().max().item() + torch.finfo(torch.bfloat16).eps * r.abs().max().item()
        assert err <= bound, f"d{name}: max error {err:.3e} > {bound:.3e}"
    assert ours[0][:, :, 150].abs().max() == 0


# The Hopper backward (kernels/bwd_wgmma, the default on sm_90; FLASH_ATTN_EXT_BWD_VARIANT=wgmma): shapes it
# takes (16-bit, E == Ev in {64, 128}, no mask), with tails in every tile (L, S of 1, 97, 113, 1025),
# both causal alignments with L < S and L > S (rows that see no key), GQA/MQA. The variable is read at
# every call; elsewhere than sm_90 the call runs bwd_mma and these are bwd_mma tests.
WGMMA_CASES = [
    # (B, H, Hkv, L, S, E, Ev, mask, causal)
    (1, 2, 2, 1, 1, 64, 64, None, False),
    (1, 2, 1, 1, 1, 128, 128, None, True),
    (2, 4, 2, 97, 113, 64, 64, None, False),
    (2, 4, 2, 113, 97, 128, 128, None, True),
    (1, 2, 1, 97, 1025, 64, 64, None, "bottom_right"),
    (1, 4, 1, 1025, 97, 128, 128, None, "bottom_right"),  # L > S: rows below L - S see no key
    (1, 2, 2, 1025, 1025, 128, 128, None, "top_left"),
    (1, 6, 2, 300, 517, 64, 64, None, True),
    (1, 3, 3, 130, 1, 64, 64, None, False),
    (1, 2, 2, 1, 300, 128, 128, None, "bottom_right"),
    (2, 2, 1, 257, 190, 128, 128, None, False),
    (1, 2, 2, 70, 200, 64, 64, None, "top_left"),  # keys 70.. seen by no query
]


@pytest.fixture
def wgmma_variant(monkeypatch):
    monkeypatch.setenv("FLASH_ATTN_EXT_BWD_VARIANT", "wgmma")


@pytest.mark.parametrize("case", WGMMA_CASES, ids=lambda c: "x".join(map(str, c)).replace("'", "").replace(" ", ""))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_wgmma_backward_matches_float64(case, dtype, wgmma_variant):
    _check(*case, dtype)


@pytest.mark.parametrize("E", [64, 128])
def test_wgmma_backward_strided_inputs_and_grad(E, wgmma_variant):
    _check(2, 4, 2, 150, 203, E, E, None, True, torch.bfloat16, layout="strided")
    _check(1, 2, 1, 97, 113, E, E, None, False, torch.float16, layout="strided")


@pytest.mark.parametrize("dtype,E", [(torch.bfloat16, 64), (torch.float16, 111), (torch.float32, 59), (torch.float32, 3)])
def test_backward_prepass_reads_misaligned_grad_rows(dtype, E):
    # dout starts one element past an aligned base, so the pre-pass (D = rowsum(dO O) - dlse, kernels/
    # bwd_prep.cu) takes its scalar loads; head dims give row groups of 16, 16, 8 and 1 lanes. Checked
    # against kernel='naive', whose dense backward computes D with ATen.
    B, H, L, S = 2, 3, 77, 90
    q, k, v = (_rand((B, H, n, E), seed, dtype).cuda() for seed, n in ((1, L), (2, S), (3, S)))
    out, lse = torch.ops.flash_attn_ext.fwd(q, k, v, None, None, 1, "auto", "auto")
    dout = _rand((B * H * L * E + 1,), 4, dtype).cuda()[1:].view(B, H, L, E)
    dlse = _rand((B, H, L), 5, torch.float32).cuda()
    ours = torch.ops.flash_attn_ext.bwd(dout, q, k, v, out, lse, dlse, None, None, 1, "auto", False, "auto")
    ref = torch.ops.flash_attn_ext.bwd(dout, q, k, v, out, lse, dlse, None, None, 1, "naive", False, "auto")
    rel = 2e-5 if dtype == torch.float32 else 8 * torch.finfo(dtype).eps
    for name, a, r in zip("qkv", ours[:3], ref[:3]):
        err = (a.double() - r.double()).abs().max().item()
        amax = r.double().abs().max().item()
        assert err <= rel * amax, f"d{name}: max error {err:.3e} > {rel * amax:.3e}"


def test_wgmma_backward_is_selected_on_hopper(monkeypatch):
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("bwd_wgmma runs on sm_90 only")
    q = torch.randn(1, 2, 64, 128, device="cuda", dtype=torch.bfloat16)
    monkeypatch.setenv("FLASH_ATTN_EXT_BWD_VARIANT", "wgmma")
    ex = fae.explain(q, q, q, causal=True)
    assert ex["backward"] == "bwd_wgmma" and "bwd_wgmma" in ex["backward_reason"]
    ex = fae.explain(q[..., :96], q[..., :96], q[..., :96])
    assert ex["backward"] == "bwd_mma" and "v5" in ex["backward_reason"] and "E == Ev in {64, 128}" in ex["backward_reason"]
    monkeypatch.setenv("FLASH_ATTN_EXT_BWD_VARIANT", "v5")
    assert "dK/dV kernel v5" in fae.explain(q, q, q)["backward_reason"]


@pytest.mark.parametrize("E", [64, 128])
def test_wgmma_backward_rows_without_keys_and_hidden_nan(E, wgmma_variant):
    # bottom_right with L > S: rows 0 .. L - S - 1 see no key, their dQ is exactly 0.
    q = torch.randn(1, 2, 200, E, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(1, 2, 90, E, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(1, 2, 90, E, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    fae.flash_attention(q, k, v, causal="bottom_right").float().square().sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert q.grad[:, :, :110].abs().max() == 0
    assert q.grad[:, :, 110:].abs().max() > 0
    # top_left with S > L: keys L.. are seen by no query; NaN there must not reach any gradient.
    q = torch.randn(1, 2, 70, E, device="cuda", dtype=torch.float16, requires_grad=True)
    k = torch.randn(1, 2, 200, E, device="cuda", dtype=torch.float16)
    v = torch.randn(1, 2, 200, E, device="cuda", dtype=torch.float16)
    k[:, :, 100] = float("nan")
    v[:, :, 150] = float("nan")
    k.requires_grad_(True)
    v.requires_grad_(True)
    fae.flash_attention(q, k, v, causal=True).float().square().sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert k.grad[:, :, 70:].abs().max() == 0 and v.grad[:, :, 70:].abs().max() == 0


# The float32 backward on tensor cores (bwd_mma's dkdv_f32_kernel.cuh / dq_f32_kernel.cuh): "auto" is 3xTF32,
# "tf32" plain TF32. The same shapes as CASES (tails of 1, 97, 113, 1025; E 8, 16, 32, 40, 59, 64, 80, 111,
# 128 and E != Ev; every mask broadcast; both causal alignments with L < S and L > S; GQA/MQA; E = 256 on the
# dense path).
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)).replace("'", "").replace(" ", ""))
@pytest.mark.parametrize("precision", ["auto", "tf32"])
def test_f32_backward_matches_float64(case, precision):
    _check(*case, torch.float32, precision=precision)


@pytest.mark.parametrize("precision", ["3xtf32", "tf32"])
def test_f32_backward_strided_and_mask_gradient(precision):
    _check(2, 4, 2, 150, 203, 64, 64, ("bool", "LS"), True, torch.float32, layout="strided", precision=precision)
    _check(1, 4, 2, 130, 97, 64, 64, ("float", "H1S"), "bottom_right", torch.float32, mask_grad=True,
           precision=precision)
    _check(2, 2, 2, 70, 65, 40, 40, ("float", "BHLS"), False, torch.float32, mask_grad=True, precision=precision)
    _check(1, 2, 1, 1025, 1025, 128, 128, None, "top_left", torch.float32, precision=precision)


@pytest.mark.parametrize("precision", ["auto", "tf32"])
def test_f32_backward_fully_masked_rows_are_zero(precision):
    q = torch.randn(1, 2, 70, 64, device="cuda", requires_grad=True)
    k = torch.randn(1, 2, 90, 64, device="cuda", requires_grad=True)
    v = torch.randn(1, 2, 90, 64, device="cuda", requires_grad=True)
    mask = torch.rand(70, 90, device="cuda") > 0.5
    mask[3] = False
    mask[:, 5] = False
    with torch.no_grad():
        v[0, :, 5] = float("nan")
    fae.flash_attention(q, k, v, mask=mask, float32_precision=precision).square().sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert q.grad[:, :, 3].abs().max() == 0
    assert k.grad[:, :, 5].abs().max() == 0
    # bottom_right with L > S: rows 0 .. L - S - 1 see no key.
    q = torch.randn(1, 2, 200, 128, device="cuda", requires_grad=True)
    k = torch.randn(1, 2, 90, 128, device="cuda", requires_grad=True)
    v = torch.randn(1, 2, 90, 128, device="cuda", requires_grad=True)
    fae.flash_attention(q, k, v, causal="bottom_right", float32_precision=precision).square().sum().backward()
    assert q.grad[:, :, :110].abs().max() == 0 and q.grad[:, :, 110:].abs().max() > 0


@pytest.mark.parametrize("precision", ["auto", "tf32"])
def test_f32_backward_deterministic_mode_is_bitwise_and_accurate(precision):
    was = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True)
        first = _check(2, 4, 2, 300, 517, 64, 64, ("bool", "B1LS"), "bottom_right", torch.float32, precision=precision)
        for _ in range(3):
            again = _check(2, 4, 2, 300, 517, 64, 64, ("bool", "B1LS"), "bottom_right", torch.float32,
                           precision=precision)
            for a, b in zip(first, again):
                assert torch.equal(a, b)
        _check(1, 4, 1, 97, 113, 59, 33, ("float", "H1S"), True, torch.float32, precision=precision)
        _check(1, 2, 2, 113, 1025, 128, 80, None, "top_left", torch.float32, precision=precision)
    finally:
        torch.use_deterministic_algorithms(was)


def test_f32_backward_is_selected():
    q = torch.randn(1, 2, 64, 128, device="cuda")
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("tensor-core backward needs sm80+")
    assert fae.explain(q, q, q)["backward"] == "bwd_mma"
    assert "3xTF32" in fae.explain(q, q, q)["backward_reason"]
    assert "TF32" in fae.explain(q, q, q, float32_precision="tf32")["backward_reason"]
    ieee = fae.explain(q, q, q, float32_precision="ieee")
    assert ieee["backward"] == "bwd_simple" and "ieee" in ieee["backward_reason"]
    big = torch.randn(1, 2, 64, 160, device="cuda")
    assert fae.explain(big, big, big)["backward"] == "bwd_simple"


def test_f32_backward_ieee_takes_bwd_simple_and_is_accurate():
    _check(1, 2, 1, 97, 113, 64, 64, ("bool", "LS"), True, torch.float32, precision="ieee")


# The CUDA-core backward (kernels/bwd_simple, O(L + S) memory): what the tensor-core backward does not take
# (max(E, Ev) in 129..256 in any dtype, float32_precision='ieee', devices below sm80). Head dims 160, 192,
# 200, 256 and E != Ev, tails of 1, 97, 113, 1025, every mask broadcast, both causal alignments with L < S
# and L > S, GQA/MQA. float32 at these head dims is IEEE float32 on CUDA cores in every precision mode.
SIMPLE_CASES = [
    # (B, H, Hkv, L, S, E, Ev, mask, causal)
    (1, 2, 2, 1, 1, 160, 160, None, False),
    (2, 4, 2, 97, 113, 192, 192, None, False),
    (1, 2, 1, 113, 97, 200, 200, ("bool", "LS"), True),
    (1, 3, 3, 97, 1025, 256, 256, ("bool", "B1LS"), "bottom_right"),
    (1, 2, 1, 1025, 97, 256, 64, ("float", "H1S"), "bottom_right"),  # L > S: rows that see no key
    (1, 2, 2, 130, 70, 64, 256, ("float", "BHLS"), "top_left"),
    (1, 4, 1, 200, 333, 256, 256, None, True),
    (2, 2, 2, 64, 128, 160, 96, ("bool", "BHLS"), False),
    (1, 2, 2, 77, 1, 129, 129, ("float", "1S"), "bottom_right"),
    (1, 2, 2, 1, 300, 256, 256, None, "bottom_right"),
]


def _ids(c):
    return "x".join(map(str, c)).replace("'", "").replace(" ", "")


@pytest.mark.parametrize("case", SIMPLE_CASES, ids=_ids)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_simple_backward_matches_float64(case, dtype):
    _check(*case, dtype)


@pytest.fixture
def simple_forced(monkeypatch):
    """Routes every call to bwd_simple, also head dims the tensor-core backward would take."""
    monkeypatch.setenv("FLASH_ATTN_EXT_BWD_SIMPLE", "force")


@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_simple_backward_forced_on_every_case(case, dtype, simple_forced):
    assert fae.explain(torch.zeros(1, 1, 8, case[5], device="cuda", dtype=dtype),
                       torch.zeros(1, 1, 8, case[5], device="cuda", dtype=dtype),
                       torch.zeros(1, 1, 8, case[6], device="cuda", dtype=dtype))["backward"] == "bwd_simple"
    _check(*case, dtype, precision="ieee" if dtype == torch.float32 else "auto")


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_simple_backward_strided_and_mask_gradient(dtype):
    _check(2, 4, 2, 150, 203, 256, 256, ("bool", "LS"), True, dtype, layout="strided")
    _check(1, 4, 2, 130, 97, 192, 192, ("float", "H1S"), "bottom_right", dtype, mask_grad=True)
    _check(2, 2, 2, 70, 65, 200, 40, ("float", "BHLS"), False, dtype, mask_grad=True)
    _check(1, 2, 1, 97, 113, 64, 64, ("float", "B1LS"), True, torch.float32, mask_grad=True, precision="ieee")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_simple_backward_fully_masked_rows_and_hidden_nan(dtype):
    q = torch.randn(1, 2, 70, 256, device="cuda", dtype=dtype, requires_grad=True)
    k = torch.randn(1, 2, 90, 256, device="cuda", dtype=dtype, requires_grad=True)
    v = torch.randn(1, 2, 90, 256, device="cuda", dtype=dtype, requires_grad=True)
    mask = torch.rand(70, 90, device="cuda") > 0.5
    mask[3] = False
    mask[:, 5] = False
    with torch.no_grad():
        v[0, :, 5] = float("nan")  # a key nobody sees must not leak NaN into any gradient
        k[0, :, 5] = float("nan")
    fae.flash_attention(q, k, v, mask=mask).float().square().sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert q.grad[:, :, 3].abs().max() == 0
    assert k.grad[:, :, 5].abs().max() == 0 and v.grad[:, :, 5].abs().max() == 0
    # bottom_right with L > S: rows 0 .. L - S - 1 see no key, their dQ is exactly 0.
    q = torch.randn(1, 2, 200, 192, device="cuda", dtype=dtype, requires_grad=True)
    k = torch.randn(1, 2, 90, 192, device="cuda", dtype=dtype, requires_grad=True)
    v = torch.randn(1, 2, 90, 192, device="cuda", dtype=dtype, requires_grad=True)
    fae.flash_attention(q, k, v, causal="bottom_right").float().square().sum().backward()
    assert q.grad[:, :, :110].abs().max() == 0 and q.grad[:, :, 110:].abs().max() > 0


@pytest.mark.parametrize("deterministic", [False, True])
def test_simple_backward_is_bitwise_reproducible(deterministic):
    """No atomics anywhere: the same bits with or without torch.use_deterministic_algorithms."""
    was = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(deterministic)
        first = _check(2, 4, 2, 300, 517, 192, 192, ("bool", "B1LS"), "bottom_right", torch.bfloat16)
        for _ in range(2):
            again = _check(2, 4, 2, 300, 517, 192, 192, ("bool", "B1LS"), "bottom_right", torch.bfloat16)
            for a, b in zip(first, again):
                assert torch.equal(a, b)
        first = _check(1, 4, 1, 97, 113, 64, 64, ("float", "H1S"), True, torch.float32, precision="ieee")
        again = _check(1, 4, 1, 97, 113, 64, 64, ("float", "H1S"), True, torch.float32, precision="ieee")
        for a, b in zip(first, again):
            assert torch.equal(a, b)
    finally:
        torch.use_deterministic_algorithms(was)


def test_simple_backward_is_selected(monkeypatch):
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        big = torch.randn(1, 2, 64, 256, device="cuda", dtype=dtype)
        ex = fae.explain(big, big, big[..., :200], causal=True)
        assert ex["backward"] == "bwd_simple" and "bwd_simple" in ex["backward_reason"], ex
    q = torch.randn(1, 2, 64, 64, device="cuda")
    assert fae.explain(q, q, q, float32_precision="ieee")["backward"] == "bwd_simple"
    assert fae.explain(q, q, q, kernel="naive")["backward"] == "dense"
    monkeypatch.setenv("FLASH_ATTN_EXT_BWD_SIMPLE", "dense")
    ex = fae.explain(big, big, big)
    assert ex["backward"] == "dense" and "FLASH_ATTN_EXT_BWD_SIMPLE=dense" in ex["backward_reason"]


@pytest.mark.parametrize("dtype,E,H,N", [(torch.float32, 64, 16, 4096), (torch.bfloat16, 256, 2, 16384)],
                         ids=["f32-ieee-E64-N4096", "bf16-E256-N16384"])
def test_simple_backward_memory_is_linear(dtype, E, H, N):
    """Peak extra memory of the backward: O(N) (the gradients, D and its temporaries), far below one float32
    (B, H, L, S) matrix (the dense path makes several)."""
    q, k, v = (torch.randn(1, H, N, E, device="cuda", dtype=dtype, requires_grad=True) for _ in range(3))
    out = fae.flash_attention(q, k, v, causal=True, float32_precision="ieee")
    dout = torch.randn_like(out)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    grads = torch.autograd.grad(out, (q, k, v), dout)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    scores = H * N * N * 4
    assert extra < scores / 4, f"backward took {extra / 2**20:.0f} MiB, one score matrix is {scores / 2**20:.0f} MiB"
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("E", [64, 40])
def test_forward_backward_cuda_graph_capture_and_replay(E, deterministic):
    # Forward + backward captured once into a CUDA graph, replayed on new inputs copied into the static
    # ones: the gradients of eager calls on the same inputs. E = 64 runs bwd_wgmma on sm_90 (bwd_mma
    # elsewhere), E = 40 bwd_mma; deterministic mode must replay bit for bit, the default up to the
    # order of dQ's float32 atomics.
    B, H, Hkv, L, S = 2, 4, 2, 200, 333
    shapes = ((B, H, L, E), (B, Hkv, S, E), (B, Hkv, S, E), (B, H, L, E))

    def fresh(seed):
        return [_rand(s, seed + i, torch.bfloat16).cuda() for i, s in enumerate(shapes)]

    *static, dout = fresh(0)
    static = [t.requires_grad_(True) for t in static]

    def step(q, k, v, g):
        fae.flash_attention(q, k, v, causal="bottom_right").backward(g)

    saved = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic)
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                step(*static, dout)
        torch.cuda.current_stream().wait_stream(side)
        for t in static:
            t.grad = None
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step(*static, dout)
        for seed in (10, 20, 30):
            *new, new_dout = fresh(seed)
            with torch.no_grad():
                for dst, src in zip(static + [dout], new + [new_dout]):
                    dst.copy_(src)
            graph.replay()
            leaves = [t.detach().clone().requires_grad_(True) for t in new]
            step(*leaves, new_dout)
            for name, got, want in zip("qkv", static, leaves):
                if deterministic:
                    assert torch.equal(got.grad, want.grad), f"d{name} differs from eager"
                else:
                    torch.testing.assert_close(got.grad, want.grad, rtol=2**-7, atol=1e-3, msg=f"d{name}")
    finally:
        torch.use_deterministic_algorithms(saved)


@pytest.mark.parametrize("E", [64, 40, 256])
def test_backward_on_a_non_current_device(E):
    # q, k, v on cuda:1 while cuda:0 is current: the pre-pass and the backward kernels (bwd_wgmma on sm_90 at
    # E = 64, bwd_mma at 40, bwd_simple at 256) must run on cuda:1 and give what the same call gives with
    # cuda:1 current, allocating nothing on cuda:0.
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    B, H, Hkv, L, S = 2, 4, 2, 130, 257
    shapes = ((B, H, L, E), (B, Hkv, S, E), (B, Hkv, S, E), (B, H, L, E))
    q0, k0, v0, g0 = (_rand(s, i, torch.bfloat16) for i, s in enumerate(shapes))

    def grads(current):
        with torch.cuda.device(current):
            q, k, v = (t.to("cuda:1").requires_grad_(True) for t in (q0, k0, v0))
            fae.flash_attention(q, k, v, causal=True).backward(g0.to("cuda:1"))
            torch.cuda.synchronize(1)
            return q.grad, k.grad, v.grad

    want = grads(1)
    before = torch.cuda.memory_allocated(0)
    got = grads(0)
    assert torch.cuda.memory_allocated(0) == before, "the backward allocated on cuda:0"
    for name, a, b in zip("qkv", got, want):
        assert a.device == torch.device("cuda:1"), f"d{name} on {a.device}"
        torch.testing.assert_close(a, b, rtol=2**-7, atol=1e-3, msg=f"d{name}")
