"""The CPU backward's own paths: every ISA build, several key chunks, hidden NaN/Inf keys, thread counts."""
import os
import subprocess
import sys

import pytest
import torch

import flash_attn_ext as fae
from flash_attn_ext.reference import attention_reference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g).to(dtype).requires_grad_(True)


def grads(fn, q, k, v):
    out = fn(q, k, v)
    out = out[0] if isinstance(out, tuple) else out  # the reference also returns the lse
    return torch.autograd.grad(out.double().square().sum(), (q, k, v))


# (B, H, Hkv, L, S, E, Ev, causal): tails of every tile, several key chunks, GQA, E != Ev, E up to 256.
SHAPES = [
    (1, 2, 1, 200, 300, 64, 64, False),
    (1, 4, 2, 131, 260, 40, 24, True),
    (2, 1, 1, 70, 129, 1, 7, "bottom_right"),
    (1, 1, 1, 33, 150, 256, 200, False),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_grads_match_float64(shape, dtype):
    B, H, Hkv, L, S, E, Ev, causal = shape
    q, k, v = make((B, H, L, E), dtype, 1), make((B, Hkv, S, E), dtype, 2), make((B, Hkv, S, Ev), dtype, 3)
    ours = grads(lambda q, k, v: fae.flash_attention(q, k, v, causal=causal), q, k, v)
    ref = grads(lambda q, k, v: attention_reference(q, k, v, causal=causal), q, k, v)
    low = grads(lambda q, k, v: attention_reference(q, k, v, causal=causal, dtype=dtype), q, k, v)
    for name, a, r, lo in zip("qkv", ours, ref, low):
        assert a.dtype == dtype
        scale = r.abs().max().item() + 1e-6
        bound = 2e-5 * scale if dtype == torch.float32 else 3 * (lo.double() - r).abs().max().item() + 1e-2 * scale
        assert (a.double() - r).abs().max().item() <= bound, f"d{name}"


@pytest.mark.parametrize("how", ["causal", "bool_mask", "float_mask"])
def test_hidden_nan_keys_leave_every_gradient_finite(how):
    L, S = 100, 200
    q, k, v = make((1, 2, L, 32), torch.float32, 1), make((1, 1, S, 32), torch.float32, 2), make((1, 1, S, 32), torch.float32, 3)
    hidden = torch.zeros(S, dtype=torch.bool)
    hidden[[7, 130, 150, 199]] = True
    kwargs = {"causal": True} if how == "causal" else {}
    if how == "causal":
        hidden[:] = False
        hidden[L:] = True  # keys no query may see under the top-left rule
    elif how == "bool_mask":
        kwargs["mask"] = ~hidden
    else:
        kwargs["mask"] = torch.zeros(S).masked_fill(hidden, float("-inf"))
    with torch.no_grad():
        k_bad, v_bad = k.detach().clone(), v.detach().clone()
        k_bad[0, 0, hidden] = float("nan")
        v_bad[0, 0, hidden] = float("inf")
    k_bad.requires_grad_(True)
    v_bad.requires_grad_(True)
    clean = grads(lambda q, k, v: fae.flash_attention(q, k, v, **kwargs), q, k, v)
    dirty = grads(lambda q, k, v: fae.flash_attention(q, k, v, **kwargs), q, k_bad, v_bad)
    for a, b in zip(clean, dirty):
        assert torch.isfinite(b).all()
    assert torch.equal(clean[0], dirty[0])
    assert torch.equal(clean[1][:, :, ~hidden], dirty[1][:, :, ~hidden])
    assert dirty[1][:, :, hidden].abs().max() == 0 and dirty[2][:, :, hidden].abs().max() == 0


def test_grads_do_not_depend_on_the_thread_count():
    q, k, v = make((1, 4, 300, 48), torch.float32, 1), make((1, 2, 400, 48), torch.float32, 2), make((1, 2, 400, 48), torch.float32, 3)
    before = torch.get_num_threads()
    runs = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            runs.append(grads(lambda q, k, v: fae.flash_attention(q, k, v, causal=True), q, k, v))
    finally:
        torch.set_num_threads(before)
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert torch.equal(a, b)


@pytest.mark.parametrize("isa", ["avx2", "portable"])
def test_narrower_isa_builds_match_float64(isa):
    # The ISA is chosen once per process, so each forced build runs in its own interpreter.
    script = (
        "import sys; sys.path.insert(0, 'tests'); import test_backward_cpu_paths as t, torch\n"
        "for s in t.SHAPES[:3]:\n"
        "    t.test_grads_match_float64(s, torch.float32)\n"
        "t.test_hidden_nan_keys_leave_every_gradient_finite('bool_mask')\n"
        "import flash_attn_ext; print(flash_attn_ext.build_info()['cpu_isa'])\n"
    )
    env = dict(os.environ, FLASH_ATTN_EXT_CPU_ISA=isa)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    host = fae.build_info()["cpu_isa"]
    assert out.stdout.split()[-1] in (isa, host if host != "avx512" else isa)
