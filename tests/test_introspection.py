"""kernels(), build_info(), explain(), kernel="auto" and naive_attention()."""
import pytest
import torch

import flash_attn_ext
from support.inputs import bool_mask, qkv
from support.runner import attend


def test_kernels_lists_named_kernels_per_device():
    ks = flash_attn_ext.kernels()
    assert ks and all(set(k) >= {"name", "device", "summary"} for k in ks)
    assert all(k["device"] in ("cpu", "cuda") and k["summary"] for k in ks)
    for dev in ("cpu", "cuda"):
        names = [k["name"] for k in flash_attn_ext.kernels(dev)]
        assert len(names) == len(set(names)), f"duplicate {dev} kernel names: {names}"
        assert "auto" not in names
    assert {"naive", "flash"} <= {k["name"] for k in flash_attn_ext.kernels("cpu")}
    assert len(flash_attn_ext.kernels("cpu")) + len(flash_attn_ext.kernels("cuda")) == len(ks)


def test_build_info():
    info = flash_attn_ext.build_info()
    assert isinstance(info["cuda"], bool) and isinstance(info["cuda_archs"], str)
    assert info["cpu_isa"] in ("avx512", "avx2", "portable")
    assert info["torch_version"] == torch.__version__
    assert bool(flash_attn_ext.kernels("cuda")) == info["cuda"]
    assert bool(info["cuda_archs"]) == info["cuda"]


def test_explain_names_the_kernel_and_why(device, kernel, gen):
    q, k, v = qkv(gen, device=device)
    mask = bool_mask((37, 70), gen, device=device)
    attend(kernel, q, k, v, mask=mask)  # skips kernels that decline the inputs
    named = flash_attn_ext.explain(q, k, v, mask=mask, kernel=kernel)
    assert named["kernel"] == kernel and named["device"] == str(q.device) and named["reason"]
    auto = flash_attn_ext.explain(q, k, v, mask=mask, causal=True)
    assert auto["kernel"] in {x["name"] for x in flash_attn_ext.kernels(device)} and auto["reason"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_auto_runs_the_kernel_explain_names(device, gen, dtype):
    q, k, v = qkv(gen, B=1, H=4, Hkv=2, L=113, S=203, E=64, dtype=dtype, device=device)
    chosen = flash_attn_ext.explain(q, k, v, causal="bottom_right")["kernel"]
    auto = flash_attn_ext.flash_attention(q, k, v, causal="bottom_right", return_lse=True)
    named = flash_attn_ext.flash_attention(q, k, v, causal="bottom_right", return_lse=True, kernel=chosen)
    assert torch.equal(auto[0], named[0]) and torch.equal(auto[1], named[1])


def test_naive_attention_is_the_naive_kernel(device, gen):
    q, k, v = qkv(gen, device=device)
    mask = bool_mask((70,), gen, device=device)
    a = flash_attn_ext.naive_attention(q, k, v, 0.3, mask, "bottom_right", return_lse=True)
    b = flash_attn_ext.flash_attention(q, k, v, 0.3, mask, "bottom_right", return_lse=True, kernel="naive")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_return_lse_false_returns_the_output_only(device, kernel, gen):
    q, k, v = qkv(gen, device=device)
    out, lse = attend(kernel, q, k, v)
    plain = flash_attn_ext.flash_attention(q, k, v, kernel=kernel)
    assert isinstance(plain, torch.Tensor) and torch.equal(plain, out)
