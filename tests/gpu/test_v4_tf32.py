"""float32 on the Hopper rung (v4_wgmma with float32_precision='tf32'), over the cases where its producer's V
transpose and the TF32 operand layouts could go wrong: key and query tails (L, S not multiples of the 128 x 64
tile), one row, one key, both causal alignments with rows that see no key, GQA, strided inputs surrounded by
NaN, E = 64 and 128.

The budget is TF32's own (support/numerics.py, budget_dtype="tf32"): twice what rounding q, k and v to TF32
costs the float64 attention (the kernel rounds P too), plus one float32 ulp of max |ref|."""
import pytest
import torch

import flash_attn_ext
from support.inputs import poisoned_view, qkv
from support.numerics import assert_matches_reference
from support.runner import V4_FLOAT32_CASES, attend, case_ids, check, needs_sm90

pytestmark = needs_sm90



def _tf32_budget_check(q, k, v, causal):
    return check("v4_wgmma", q, k, v, causal=causal, budget_dtype="tf32", float32_precision="tf32")


@pytest.mark.parametrize("B,H,Hkv,L,S,E,causal", V4_FLOAT32_CASES, ids=case_ids(V4_FLOAT32_CASES))
def test_tf32_matches_within_budget(gen, B, H, Hkv, L, S, E, causal):
    q, k, v = qkv(gen, B=B, H=H, Hkv=Hkv, L=L, S=S, E=E, device="cuda")
    _tf32_budget_check(q, k, v, causal)


@pytest.mark.parametrize("E", [64, 128])
def test_tf32_strided_inputs_framed_by_nan(gen, E):
    # Four NaN floats around every dimension keep the base and strides 16-byte aligned (the TMA's rule), and
    # any read past the view's edges picks up NaN.
    q, k, v = qkv(gen, B=2, H=2, L=150, S=333, E=E, device="cuda")
    qs, ks, vs = (poisoned_view(t, pad=4) for t in (q, k, v))
    assert not qs.is_contiguous()
    assert flash_attn_ext.explain(qs, ks, vs, causal="bottom_right", float32_precision="tf32")["kernel"] == "v4_wgmma"
    out, lse = _tf32_budget_check(qs, ks, vs, "bottom_right")
    dense = attend("v4_wgmma", q, k, v, causal="bottom_right", float32_precision="tf32")
    assert torch.equal(out, dense[0]) and torch.equal(lse, dense[1])


def test_default_routes_tensor_core_float32_to_v4_and_ieee_to_cuda_cores(gen):
    q, k, v = qkv(gen, B=1, H=2, L=256, S=256, E=128, device="cuda")
    for precision, words in (("tf32", "TF32 tensor cores"), ("auto", "3xF16"), ("3xtf32", "3xTF32")):
        chosen = flash_attn_ext.explain(q, k, v, float32_precision=precision)
        assert chosen["kernel"] == "v4_wgmma" and words in chosen["reason"]
    assert flash_attn_ext.explain(q, k, v, float32_precision="ieee")["kernel"] == "v2_warp"
    q96, k96, v96 = qkv(gen, B=1, H=2, L=64, S=64, E=96, device="cuda")
    assert flash_attn_ext.explain(q96, k96, v96, float32_precision="tf32")["kernel"] == "v3_mma"
    with pytest.raises(ValueError, match="float32_precision='ieee'"):
        flash_attn_ext.flash_attention(q, k, v, kernel="v4_wgmma", float32_precision="ieee")


def test_tf32_repeated_runs_and_graph_replay_are_bit_identical(gen):
    shape = dict(B=2, H=4, Hkv=2, L=200, S=333, E=64, device="cuda")
    static = [t.clone() for t in qkv(gen, **shape)]
    first = attend("v4_wgmma", *static, causal="bottom_right", float32_precision="tf32")
    for _ in range(20):
        again = flash_attn_ext.flash_attention(*static, causal="bottom_right", return_lse=True, kernel="v4_wgmma",
                                               float32_precision="tf32")
        assert torch.equal(again[0], first[0]) and torch.equal(again[1], first[1])
    graph = torch.cuda.CUDAGraph()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        flash_attn_ext.flash_attention(*static, causal="bottom_right", kernel="v4_wgmma", float32_precision="tf32")
    torch.cuda.current_stream().wait_stream(side)
    with torch.cuda.graph(graph):
        out, lse = flash_attn_ext.flash_attention(*static, causal="bottom_right", return_lse=True, kernel="v4_wgmma",
                                                  float32_precision="tf32")
    for dst, src in zip(static, qkv(gen, **shape)):
        dst.copy_(src)
    graph.replay()
    want = attend("v4_wgmma", *static, causal="bottom_right", float32_precision="tf32")
    assert torch.equal(out, want[0]) and torch.equal(lse, want[1])


def test_tf32_many_heads(gen):
    # B * H = 70000 query blocks of one row each: the one-CTA grid is one-dimensional.
    q, k, v = qkv(gen, B=2, H=35000, Hkv=5000, L=17, S=33, E=64, device="cuda")
    out, lse = attend("v4_wgmma", q, k, v, causal="bottom_right", float32_precision="tf32")
    for b, h in ((0, 0), (1, 17_499), (1, 34_999)):
        hk = h // 7
        assert_matches_reference(out[b, h], lse[b, h], q[b, h], k[b, hk], v[b, hk], causal="bottom_right",
                                 budget_dtype="tf32")


def test_tf32_value_offsets_beyond_int32(gen):
    # V's second batch starts 2^31 + 64 floats into its buffer: the producer's own V loads (not the TMA) must
    # index with 64 bits; K likewise through the TMA.
    S, E = 300, 64
    stride_b = 2**31 + 64
    q, k_dense, v_dense = qkv(gen, B=2, H=1, L=100, S=S, E=E, device="cuda")
    buf = torch.empty(stride_b + S * E, device="cuda")
    v = buf.as_strided((2, 1, S, E), (stride_b, S * E, E, 1))
    v.copy_(v_dense)
    _tf32_budget_check(q, k_dense, v, "bottom_right")
    del buf
    buf = torch.empty(stride_b + S * E, device="cuda")
    k = buf.as_strided((2, 1, S, E), (stride_b, S * E, E, 1))
    k.copy_(k_dense)
    _tf32_budget_check(q, k, v_dense, True)
