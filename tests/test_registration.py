"""The op as PyTorch sees it: schema, fake (meta) kernel, FakeTensorMode and torch.compile.
opcheck runs all its utilities, autograd included."""
import pytest
import torch
from torch._subclasses import FakeTensorMode

import flash_attn_ext
from support.inputs import bool_mask, float_mask, qkv
from support.runner import attend, declines

CAUSAL_OF_CODE = {0: False, 1: True, 2: "bottom_right"}

FWD = torch.ops.flash_attn_ext.fwd.default


def _samples(gen, device):
    """(name, args of the 4-D op) covering masks, causal codes, GQA, E != Ev, dtypes and empty sizes."""
    q, k, v = qkv(gen, B=2, H=4, L=37, S=70, E=16, Ev=24, device=device)
    qh, kh, vh = qkv(gen, B=1, H=4, Hkv=2, L=37, S=70, E=40, dtype=torch.bfloat16, device=device)
    qe, ke, ve = qkv(gen, B=1, H=2, L=5, S=0, E=8, device=device)
    return [
        ("plain", (q, k, v, None, None, 0)),
        ("bool-mask-bcast", (q, k, v, bool_mask((2, 1, 1, 70), gen, device=device), 0.5, 1)),
        ("float-mask", (q, k, v, float_mask((37, 70), gen, device=device), None, 2)),
        ("gqa-bf16", (qh, kh, vh, None, -0.3, 1)),
        ("transposed-q", (q.transpose(1, 2).contiguous().transpose(1, 2), k, v, None, None, 0)),
        ("empty-S", (qe, ke, ve, None, None, 2)),
    ]


def test_opcheck(device, kernel, gen):
    for name, args in _samples(gen, device):
        if device != "cpu":
            attend(kernel, *args[:3])  # skips kernels that decline the inputs
        torch.library.opcheck(FWD, (*args, kernel, "auto"))


def test_fake_tensor_mode_matches_real_metadata(device, kernel, gen):
    for name, args in _samples(gen, device):
        q, k, v, mask, scale, code = args
        if declines(kernel, q, k, v, scale, mask, CAUSAL_OF_CODE[code]):
            continue
        out, lse = FWD(*args, kernel, "auto")
        with FakeTensorMode(allow_non_fake_inputs=False) as mode:
            fake_args = tuple(mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args)
            f_out, f_lse = FWD(*fake_args, kernel, "auto")
        for real, fake in ((out, f_out), (lse, f_lse)):
            assert fake.shape == real.shape and fake.dtype == real.dtype and fake.device == real.device, name
            assert fake.stride() == real.stride(), name


@pytest.mark.parametrize("bad", ["head-dim", "heads", "mask"])
def test_fake_kernel_rejects_what_the_real_kernel_rejects(device, gen, bad):
    # A fake kernel that accepts bad shapes lets torch.compile/export build graphs with made-up sizes.
    q, k, v = qkv(gen, B=1, H=4, L=8, S=8, E=16)
    mask = None
    if bad == "head-dim":
        k = k[..., :15]
    elif bad == "heads":
        k, v = k[:, :3], v[:, :3]
    else:
        mask = torch.ones(3, 8, dtype=torch.bool)
    q, k, v = (t.to(device) for t in (q, k, v))
    mask = None if mask is None else mask.to(device)
    with FakeTensorMode() as mode:
        fq, fk, fv = (mode.from_tensor(t) for t in (q, k, v))
        fm = None if mask is None else mode.from_tensor(mask)
        with pytest.raises((ValueError, RuntimeError), match="flash_attention"):
            FWD(fq, fk, fv, fm, None, 0, "auto", "auto")


def test_compile_fullgraph_matches_eager(device, kernel, gen):
    q, k, v = qkv(gen, B=1, H=4, Hkv=2, L=37, S=70, E=16, device=device)
    mask = bool_mask((37, 70), gen, device=device)
    attend(kernel, q, k, v, mask=mask, causal="bottom_right")  # skips kernels that decline the inputs

    def f(q, k, v, mask):
        # Rank-3 inputs: the rank normalisation in ops.py is traced too.
        return flash_attn_ext.flash_attention(q[0], k[0], v[0], None, mask, "bottom_right", return_lse=True,
                                              kernel=kernel)

    # Nothing but the op in the graph: inductor then has no C++ of its own to compile (that costs ~30 s here).
    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True)
    got, want = compiled(q, k, v, mask), f(q, k, v, mask)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_compile_dynamic_shapes(device, kernel, gen):
    def f(q, k, v):
        return flash_attn_ext.flash_attention(q, k, v, causal=True, kernel=kernel) + 1

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, dynamic=True, backend="aot_eager")
    for L, S in ((37, 70), (50, 91), (1, 13)):
        q, k, v = qkv(gen, B=2, H=2, L=L, S=S, E=8, Ev=12, device=device)
        attend(kernel, q, k, v, causal=True)
        assert torch.equal(compiled(q, k, v), f(q, k, v))
