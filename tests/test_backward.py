"""Gradients through flash_attention: against float64 autograd of the reference, gradcheck, opcheck, compile."""
import pytest
import torch

import flash_attn_ext as fae
from flash_attn_ext.reference import attention_reference
from support.runner import declines



def kernels_for(device):
    return [k["name"] for k in fae.kernels(device)]


def make(shape, dtype, device, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float32).to(device=device, dtype=dtype).requires_grad_(True)


def grads_of(fn, inputs, weights):
    outs = fn(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    loss = sum((o.double() * w).sum() for o, w in zip(outs, weights))
    return torch.autograd.grad(loss, [t for t in inputs if t is not None and t.requires_grad])


CASES = [
    # (B, H, Hkv, L, S, E, Ev, mask kind, causal)
    (2, 4, 2, 37, 53, 24, 16, None, False),
    (1, 3, 1, 65, 130, 40, 40, "bool", True),
    (2, 2, 2, 97, 61, 59, 33, "float", "bottom_right"),
    (1, 4, 4, 130, 70, 64, 64, "float_grad", "top_left"),
    (1, 2, 1, 1, 97, 8, 8, None, "bottom_right"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_grads_match_float64_reference(device, case, dtype):
    B, H, Hkv, L, S, E, Ev, mask_kind, causal = case
    q = make((B, H, L, E), dtype, device, 1)
    k = make((B, Hkv, S, E), dtype, device, 2)
    v = make((B, Hkv, S, Ev), dtype, device, 3)
    mask = None
    if mask_kind == "bool":
        mask = (torch.rand(L, S, generator=torch.Generator().manual_seed(4)) > 0.3).to(device)
    elif mask_kind is not None:
        mask = torch.randn(H, 1, S, generator=torch.Generator().manual_seed(5)).to(device)
        mask.requires_grad_(mask_kind == "float_grad")
    w_out = torch.randn(B, H, L, Ev, dtype=torch.float64, device=device)
    w_lse = torch.randn(B, H, L, dtype=torch.float64, device=device)
    inputs = (q, k, v, mask)
    ref = grads_of(lambda q, k, v, m: attention_reference(q, k, v, mask=m, causal=causal), inputs, (w_out, w_lse))
    # What plain PyTorch in the same dtype gets: the error budget for low precision.
    low = grads_of(
        lambda q, k, v, m: attention_reference(q, k, v, mask=m, causal=causal, dtype=q.dtype), inputs, (w_out, w_lse)
    )
    for kernel in kernels_for(device):
        if declines(kernel, q, k, v, mask=mask, causal=causal):
            continue
        ours = grads_of(
            lambda q, k, v, m: fae.flash_attention(q, k, v, mask=m, causal=causal, return_lse=True, kernel=kernel),
            inputs,
            (w_out, w_lse),
        )
        for name, a, r, lo in zip("qkvm", ours, ref, low):
            err = (a.double() - r).abs().max().item()
            scale = r.abs().max().item() + 1e-6
            if dtype == torch.float32:
                bound = 2e-5 * scale
            else:
                bound = 3 * (lo.double() - r).abs().max().item() + 1e-2 * scale
            assert torch.isfinite(a).all(), f"{kernel}: d{name} has non-finite values"
            assert err <= bound, f"{kernel}: d{name} max error {err:.3e} > {bound:.3e}"


@pytest.mark.parametrize("causal", [False, True, "bottom_right"])
def test_gradcheck_float64(causal):
    q = make((1, 2, 6, 5), torch.float64, "cpu", 1)
    k = make((1, 1, 9, 5), torch.float64, "cpu", 2)
    v = make((1, 1, 9, 3), torch.float64, "cpu", 3)
    fmask = torch.randn(6, 9, dtype=torch.float64, requires_grad=True)
    bmask = torch.rand(2, 1, 9) > 0.3
    assert torch.autograd.gradcheck(lambda q, k, v: fae.flash_attention(q, k, v, causal=causal), (q, k, v))
    assert torch.autograd.gradcheck(lambda q, k, v: fae.flash_attention(q, k, v, mask=bmask, causal=causal), (q, k, v))
    assert torch.autograd.gradcheck(
        lambda q, k, v, m: fae.flash_attention(q, k, v, mask=m, causal=causal), (q, k, v, fmask)
    )


def test_fully_masked_rows_and_empty_sizes_give_zero_grads(device):
    q = make((1, 2, 8, 16), torch.float32, device, 1)
    k = make((1, 2, 8, 16), torch.float32, device, 2)
    v = make((1, 2, 8, 16), torch.float32, device, 3)
    mask = torch.ones(8, 8, dtype=torch.bool, device=device)
    mask[3] = False
    out = fae.flash_attention(q, k, v, mask=mask)
    out.sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all() and torch.isfinite(v.grad).all()
    assert q.grad[:, :, 3].abs().max() == 0
    for L, S in [(0, 5), (5, 0)]:
        q = make((1, 2, L, 4), torch.float32, device, 1)
        k = make((1, 2, S, 4), torch.float32, device, 2)
        v = make((1, 2, S, 4), torch.float32, device, 3)
        fae.flash_attention(q, k, v).sum().backward()
        for t in (q, k, v):
            assert t.grad is not None and t.grad.shape == t.shape and t.grad.abs().sum() == 0


def test_backward_is_bitwise_reproducible(device):
    q = make((1, 4, 200, 32), torch.float32, device, 1)
    k = make((1, 2, 150, 32), torch.float32, device, 2)
    v = make((1, 2, 150, 32), torch.float32, device, 3)
    runs = []
    # On CUDA reproducible bits are promised under deterministic algorithms only (README): float32 now runs the
    # tensor-core backward, whose default dQ uses float32 reductions.
    was = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(was or device != "cpu")
        for _ in range(3):
            g = torch.autograd.grad(fae.flash_attention(q, k, v, causal=True).square().sum(), (q, k, v))
            runs.append(g)
    finally:
        torch.use_deterministic_algorithms(was)
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert torch.equal(a, b)


def test_opcheck_forward_with_autograd(device):
    q = make((1, 2, 9, 8), torch.float32, device, 1)
    k = make((1, 1, 7, 8), torch.float32, device, 2)
    v = make((1, 1, 7, 4), torch.float32, device, 3)
    mask = torch.randn(9, 7, device=device, requires_grad=True)
    for args in [(q, k, v, None, None, 1, "auto", "auto"), (q, k, v, mask, 0.5, 2, "auto", "auto")]:
        torch.library.opcheck(torch.ops.flash_attn_ext.fwd.default, args)


def test_opcheck_backward_op(device):
    # The backward is an op of its own (schema, fake kernel, real kernels): opcheck it directly, on the
    # tensor-core backward where there is a GPU (bf16, E = 64) and with a float mask and its gradient.
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    q = make((1, 2, 9, 64), dtype, device, 1).detach()
    k = make((1, 1, 7, 64), dtype, device, 2).detach()
    v = make((1, 1, 7, 64), dtype, device, 3).detach()
    mask = torch.randn(9, 7, device=device)
    for m, scale, causal, mask_grad in [(None, None, 1, False), (mask, 0.5, 2, True)]:
        out, lse = torch.ops.flash_attn_ext.fwd(q, k, v, m, scale, causal, "auto", "auto")
        dout, dlse = torch.randn_like(out), torch.randn_like(lse)
        args = (dout, q, k, v, out, lse, dlse, m, scale, causal, "auto", mask_grad, "auto")
        torch.library.opcheck(torch.ops.flash_attn_ext.bwd.default, args)


def test_compile_fullgraph_forward_backward_matches_eager(device):
    # On CUDA: bf16 at E = 64, the tensor-core forward and backward.
    dtype, E = (torch.float32, 16) if device == "cpu" else (torch.bfloat16, 64)
    q = make((1, 2, 33, E), dtype, device, 1)
    k = make((1, 2, 33, E), dtype, device, 2)
    v = make((1, 2, 33, E), dtype, device, 3)
    w = torch.randn(E, E, device=device, dtype=dtype)

    def block(q, k, v):
        return (fae.flash_attention(q, k, v, causal=True) @ w).relu().float().sum()

    eager = torch.autograd.grad(block(q, k, v), (q, k, v))
    torch._dynamo.reset()
    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    got = torch.autograd.grad(compiled(q, k, v), (q, k, v))
    for a, b in zip(eager, got):
        torch.testing.assert_close(a, b)  # dQ's float32 atomics may order sums differently run to run
