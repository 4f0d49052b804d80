"""float32-accurate on the Hopper rung: v4_wgmma's 3xTF32 kernel (float32_precision='3xtf32' on sm_90) and its 3xF16
kernel ('auto', kernel_f16x3.cuh; its own range tests are in test_v4_f16x3.py), over
the cases where its own loads could go wrong (every operand reaches shared memory through the threads that split
it into two TF32 halves): key and query tails (L, S not multiples of the 128 x 32
or 128 x 64 tile), one row, one key, both causal alignments with rows that see no key, GQA, a negative scale,
strided inputs framed by NaN, offsets past 2^31 floats, E = 64 and 128.

The budget is float32's own (support/numerics.py): 1e-5 x max |ref|; and the error must stay far below TF32's, so a
kernel that lost a product's correction term (TF32-sized errors, ~1e-3) fails here, and at or below SDPA's efficient
backend (float32 on CUDA cores), which a rescale that drifts along the row fails from N ~ 1000 on (session 9's
first versions: 2.6e-6 at N = 1024, 4.4e-5 at 16k; benchmarks/NOTES_v4.md, float32 step 4)."""
import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from support.inputs import poisoned_view, qkv
from support.numerics import assert_matches_reference, reference
from support.runner import V4_FLOAT32_CASES, attend, case_ids, check, needs_sm90

pytestmark = needs_sm90

# The TF32 kernel's cases, and a key tail inside the first 32-key tile.
CASES = V4_FLOAT32_CASES + [(1, 2, 2, 255, 33, 128, True)]


def _rel_err(out, q, k, v, causal, scale=None):
    ref, _ = reference(q, k, v, scale=scale, causal=causal)
    return (out.cpu().double() - ref).abs().max().item() / ref.abs().max().item()


@pytest.mark.parametrize("precision", ["auto", "3xtf32"])
@pytest.mark.parametrize("B,H,Hkv,L,S,E,causal", CASES, ids=case_ids(CASES))
def test_3xtf32_matches_within_float32_budget(gen, B, H, Hkv, L, S, E, causal, precision):
    q, k, v = qkv(gen, B=B, H=H, Hkv=Hkv, L=L, S=S, E=E, device="cuda")
    check("v4_wgmma", q, k, v, causal=causal, float32_precision=precision)


@pytest.mark.parametrize("precision", ["auto", "3xtf32"])
@pytest.mark.parametrize("E", [64, 128])
@pytest.mark.parametrize("causal", [False, True])
def test_3xtf32_error_at_most_sdpa_efficient_and_far_below_tf32(gen, E, causal, precision):
    q, k, v = qkv(gen, B=1, H=4, L=1025, S=1025, E=E, device="cuda")
    ours, _ = attend("v4_wgmma", q, k, v, causal=causal, float32_precision=precision)
    tf32, _ = attend("v4_wgmma", q, k, v, causal=causal, float32_precision="tf32")
    with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
        sdpa = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    err, err_tf32, err_sdpa = (_rel_err(o, q, k, v, causal) for o in (ours, tf32, sdpa))
    assert err <= err_sdpa, (err, err_sdpa)
    assert err * 100 < err_tf32, (err, err_tf32)


@pytest.mark.parametrize("precision", ["auto", "3xtf32"])
@pytest.mark.parametrize("scale", [-0.3, 0.0])
def test_3xtf32_negative_and_zero_scale(gen, scale, precision):
    # A negative scale runs on -Q, which the consumers negate as they load it; zero gives the plain mean.
    q, k, v = qkv(gen, B=1, H=2, L=150, S=333, E=64, device="cuda")
    check("v4_wgmma", q, k, v, scale=scale, causal="bottom_right", float32_precision=precision)


@pytest.mark.parametrize("precision", ["auto", "3xtf32"])
@pytest.mark.parametrize("E", [64, 128])
def test_3xtf32_strided_inputs_framed_by_nan(gen, E, precision):
    # Four NaN floats around every dimension keep rows 16-byte aligned, and any read past the view's edges
    # (a key tail, a query tail) picks up NaN.
    q, k, v = qkv(gen, B=2, H=2, L=150, S=333, E=E, device="cuda")
    qs, ks, vs = (poisoned_view(t, pad=4) for t in (q, k, v))
    assert not qs.is_contiguous()
    out, lse = check("v4_wgmma", qs, ks, vs, causal="bottom_right", float32_precision=precision)
    dense = attend("v4_wgmma", q, k, v, causal="bottom_right", float32_precision=precision)
    assert torch.equal(out, dense[0]) and torch.equal(lse, dense[1])


@pytest.mark.parametrize("precision", ["auto", "3xtf32"])
def test_3xtf32_repeated_runs_are_bit_identical(gen, precision):
    q, k, v = qkv(gen, B=2, H=4, Hkv=2, L=200, S=333, E=128, device="cuda")
    first = attend("v4_wgmma", q, k, v, causal="bottom_right", float32_precision=precision)
    for _ in range(20):
        again = attend("v4_wgmma", q, k, v, causal="bottom_right", float32_precision=precision)
        assert torch.equal(again[0], first[0]) and torch.equal(again[1], first[1])


@pytest.mark.parametrize("precision", ["auto", "3xtf32"])
def test_3xtf32_many_heads(gen, precision):
    # B * H = 70000 query blocks of one row each: the one-CTA grid is one-dimensional.
    q, k, v = qkv(gen, B=2, H=35000, Hkv=5000, L=17, S=33, E=64, device="cuda")
    out, lse = attend("v4_wgmma", q, k, v, causal="bottom_right", float32_precision=precision)
    for b, h in ((0, 0), (1, 17_499), (1, 34_999)):
        hk = h // 7
        assert_matches_reference(out[b, h], lse[b, h], q[b, h], k[b, hk], v[b, hk], causal="bottom_right")


@pytest.mark.parametrize("precision", ["auto", "3xtf32"])
def test_3xtf32_offsets_beyond_int32(gen, precision):
    # The second batch of Q, then of K, starts 2^31 + 64 floats into its buffer: both are read by this kernel's own
    # loads, which must index with 64 bits (V's loads are the TF32 kernel's, tested past 2^31 in test_v4_tf32.py).
    # One 8 GiB buffer at a time, so the suite's parallel workers do not run out of memory.
    L, S, E = 100, 300, 64
    stride_b = 2**31 + 64
    dense = dict(zip("qkv", qkv(gen, B=2, H=1, L=L, S=S, E=E, device="cuda")))
    for which in "qk":
        rows = L if which == "q" else S
        buf = torch.empty(stride_b + rows * E, device="cuda")
        far = buf.as_strided((2, 1, rows, E), (stride_b, rows * E, E, 1))
        far.copy_(dense[which])
        args = {**dense, which: far}
        check("v4_wgmma", args["q"], args["k"], args["v"], causal="bottom_right", float32_precision=precision)
        del far, buf
        torch.cuda.empty_cache()
