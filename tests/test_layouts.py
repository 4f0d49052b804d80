"""Inputs in the layouts models actually pass: transposed projections, packed QKV, odd strides, views
into poisoned buffers, misaligned storage offsets, one tensor passed as q, k and v."""
import pytest
import torch

from support.inputs import bool_mask, last_dim_strided, poisoned_view, qkv, randn, transposed_storage
from support.runner import attend, check

B, H, L, S, E = 2, 3, 45, 77, 24


def _same(a, b):
    torch.testing.assert_close(a[0], b[0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(a[1], b[1], rtol=1e-6, atol=1e-6)


LAYOUTS = {
    "transposed-storage": transposed_storage,
    "last-dim-strided": last_dim_strided,
    "nan-padded-view": poisoned_view,
}


@pytest.mark.parametrize("which", ["q", "k", "v", "qkv"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_strided_inputs(device, kernel, gen, layout, which):
    q, k, v = qkv(gen, B=B, H=H, L=L, S=S, E=E, Ev=16, device=device)
    base = check(kernel, q, k, v, causal="bottom_right")
    moved = {n: (LAYOUTS[layout](t) if n in which else t) for n, t in (("q", q), ("k", k), ("v", v))}
    before = {n: t.clone() for n, t in moved.items()}
    got = check(kernel, moved["q"], moved["k"], moved["v"], causal="bottom_right")
    _same(got, base)
    for n, t in moved.items():
        assert torch.equal(t, before[n]), f"the kernel wrote into its input {n}"


def test_packed_qkv_projection(device, kernel, gen):
    packed = randn((B, L, 3, H, E), gen, device=device)  # one (B, L, 3*H*E) projection output, viewed
    q, k, v = (packed[:, :, i].transpose(1, 2) for i in range(3))
    assert not q.is_contiguous() and q.stride(-1) == 1
    got = check(kernel, q, k, v, causal=True)
    _same(got, attend(kernel, q.contiguous(), k.contiguous(), v.contiguous(), causal=True))


def test_packed_kv_with_gqa(device, kernel, gen):
    q = randn((B, 6, L, E), gen, device=device)
    kv = randn((B, S, 2, 2, E), gen, device=device)
    k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
    check(kernel, q, k, v, mask=bool_mask((B, 1, L, S), gen, device=device))


def test_same_tensor_as_q_k_v(device, kernel, gen):
    x = randn((B, H, L, E), gen, device=device)
    got = check(kernel, x, x, x, causal=True)
    _same(got, attend(kernel, x.clone(), x.clone(), x.clone(), causal=True))


@pytest.mark.parametrize("offset", [1, 3])
def test_misaligned_storage_offset(device, kernel, gen, offset):
    q, k, v = qkv(gen, B=B, H=H, L=L, S=S, E=E, device=device)

    def shifted(t):
        flat = torch.full((t.numel() + offset,), float("nan"), device=device)
        view = flat[offset:].view(t.shape)
        view.copy_(t)
        return view

    got = check(kernel, shifted(q), shifted(k), shifted(v))
    _same(got, attend(kernel, q, k, v))


def test_nan_padded_mask_view(device, kernel, gen):
    q, k, v = qkv(gen, B=B, H=H, L=L, S=S, device=device)
    bias = torch.randn((B, 1, L, S), generator=gen).to(device)
    got = check(kernel, q, k, v, mask=poisoned_view(bias))
    _same(got, attend(kernel, q, k, v, mask=bias))


def test_stride0_broadcast_inputs(device, kernel, gen):
    # One K/V shared by the whole batch (a common prefix) and one query row repeated: stride-0 dims read in place.
    q1, k1, v1 = qkv(gen, B=1, H=H, L=1, S=S, E=E, device=device)
    q, k, v = q1.expand(B, H, L, E), k1.expand(B, H, S, E), v1.expand(B, H, S, E)
    assert q.stride(0) == q.stride(2) == k.stride(0) == 0
    out, lse = check(kernel, q, k, v)
    assert torch.equal(out[1], out[0]) and torch.equal(out[:, :, 7], out[:, :, 0])
    _same((out, lse), attend(kernel, q.contiguous(), k.contiguous(), v.contiguous()))
