"""float32-accurate on fp16 tensor cores: v4_wgmma's 3xF16 kernel (float32_precision='auto' on sm_90,
kernel_f16x3.cuh). Every block of Q, K and V is multiplied by a power of two into fp16's range before it is split
into two fp16 halves, and the results are scaled back: these tests hold the scaling to its promises. Powers of two
are exact, so scaling the inputs by powers of two scales the output bit for bit; inputs near the ends of float32's
range still meet float32's budget; zero blocks, and inf or NaN in keys that no row sees, change nothing else. The
shapes, tails, strides, GQA and causal cases run in test_v4_f32x3.py (its 'auto' cases are this kernel); head dims
below 128 other than 64 run here, padded with zeros by the kernel's own loads (the 3xTF32 and TF32 kernels take
64 and 128 only)."""
import pytest
import torch

import flash_attn_ext

from support.inputs import qkv
from support.numerics import assert_matches_reference
from support.runner import attend, check, needs_sm90

pytestmark = needs_sm90


@pytest.mark.parametrize("E", [64, 128])
@pytest.mark.parametrize("causal", [False, "bottom_right"])
@pytest.mark.parametrize("q_pow,v_pow", [(60, -90), (-90, 100), (100, -95)])
def test_3xf16_powers_of_two_scale_the_output_exactly(gen, E, causal, q_pow, v_pow):
    # Q 2^a with K 2^-a leaves every score as it was; V 2^c scales the output by 2^c. The kernel's block scales
    # absorb both exactly, so the output is 2^c times the unscaled one, bit for bit, and the LSE is unchanged (while
    # every block still reaches the top of fp16's range: largest values above 2^-112 in Q and K, 2^-97 in V).
    q, k, v = qkv(gen, B=1, H=2, L=200, S=333, E=E, device="cuda")
    out, lse = attend("v4_wgmma", q, k, v, causal=causal)
    out2, lse2 = attend("v4_wgmma", q * 2.0**q_pow, k * 2.0**-q_pow, v * 2.0**v_pow, causal=causal)
    assert torch.equal(out2, out * 2.0**v_pow)
    assert torch.equal(lse2, lse)


@pytest.mark.parametrize("E", [64, 128])
@pytest.mark.parametrize("q_mul,k_mul,v_mul", [(1e-30, 1e30, 1e32), (1e25, 1e-25, 1e-30), (2.0**-120, 1.0, 1.0),
                                               (1.0, 1e-38, 1e33)])
def test_3xf16_far_ends_of_float32_within_budget(gen, E, q_mul, k_mul, v_mul):
    # Q and K blocks whose largest value is below 2^-112 (2^-118 here, 1e-38 with float32 subnormals, which the
    # kernel flushes to zero) are scaled by 2^126 only, V blocks below 2^-97 by 2^111; the others land at the top
    # of fp16's range whatever their size. (V stays 2^10 below float32's largest
    # value: the output accumulates unnormalised, l times the result, as in every flash kernel.)
    q, k, v = qkv(gen, B=1, H=2, L=150, S=333, E=E, device="cuda")
    check("v4_wgmma", q * q_mul, k * k_mul, v * v_mul, causal="bottom_right")


@pytest.mark.parametrize("which", ["q", "k", "v"])
def test_3xf16_zero_blocks(gen, which):
    # An all-zero block has no largest value: scaled by 2^100, it stays zero.
    q, k, v = qkv(gen, B=1, H=2, L=130, S=200, E=128, device="cuda")
    t = dict(q=q, k=k, v=v)
    t[which] = t[which].clone()
    t[which][:, :, :64] = 0
    check("v4_wgmma", t["q"], t["k"], t["v"], causal=False)


@pytest.mark.parametrize("E", [64, 128])
def test_3xf16_outlier_key_rows(gen, E):
    # One key in each tile 30 times larger in K and one 1000 times larger in V (outliers, as in trained models): the
    # tile's scale follows the outlier, and the other keys' values, 2^5 or 2^10 below it, keep every bit.
    q, k, v = qkv(gen, B=1, H=2, L=256, S=512, E=E, device="cuda")
    k[:, :, ::32] *= 30
    v[:, :, 5::32] *= 1000
    check("v4_wgmma", q, k, v, causal=False)


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_3xf16_non_finite_keys_that_no_row_sees(gen, bad):
    # Key 60 (E = 64: inside the first 64-key tile) is hidden from rows 0..59 by the causal mask; its inf or NaN must
    # neither leak into those rows nor set the scale of the tile's other keys (the largest finite value does).
    q, k, v = qkv(gen, B=1, H=2, L=64, S=64, E=64, device="cuda")
    kb = k.clone()
    kb[:, :, 60] = bad
    out, lse = attend("v4_wgmma", q, kb, v, causal="top_left")
    assert_matches_reference(out[:, :, :60], lse[:, :, :60], q[:, :, :60], k, v, causal="top_left")


@pytest.mark.parametrize("E", [8, 32, 40, 72, 96, 112])
@pytest.mark.parametrize("causal", [False, "top_left", "bottom_right"])
def test_3xf16_padded_head_dims(gen, E, causal):
    # Run on 64 or 128 columns, the loads filling the columns past E with zeros: tails in L and S, GQA.
    q, k, v = qkv(gen, B=2, H=4, Hkv=2, L=150, S=333, E=E, device="cuda")
    assert flash_attn_ext.explain(q, k, v, causal=causal)["kernel"] == "v4_wgmma"
    assert flash_attn_ext.explain(q, k, v, float32_precision="3xtf32")["kernel"] == "v3_mma"
    out, _ = check("v4_wgmma", q, k, v, causal=causal)
    assert out.is_contiguous()


def test_3xf16_padded_head_dim_views_framed_by_nan(gen):
    # q/k/v as views into wider NaN-filled rows: a load past E would bring NaN in.
    q, k, v = qkv(gen, B=1, H=2, L=200, S=333, E=40, device="cuda")
    views = []
    for t in (q, k, v):
        big = torch.full((*t.shape[:-1], 64), float("nan"), device=t.device)
        big[..., :40] = t
        views.append(big[..., :40])
    out, _ = check("v4_wgmma", *views, causal=True)
    ref, _ = check("v4_wgmma", q, k, v, causal=True)
    assert torch.equal(out, ref)


def test_3xf16_declines_rows_that_are_not_16_byte_aligned(gen):
    q, k, v = qkv(gen, B=1, H=2, L=64, S=64, E=59, device="cuda")
    assert flash_attn_ext.explain(q, k, v)["kernel"] == "v3_mma"
