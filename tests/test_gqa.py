"""GQA/MQA: query head h reads kv head h // (H // Hkv), as repeat_interleave, without copying K/V."""
import pytest
import torch

from support.inputs import bool_mask, qkv
from support.runner import attend, check

H = 6


@pytest.mark.parametrize("Hkv", [1, 2, 3, H])
def test_gqa_matches_repeat_interleave(device, kernel, gen, Hkv):
    q, k, v = qkv(gen, B=2, H=H, Hkv=Hkv, L=45, S=133, E=24, Ev=40, device=device)
    out, lse = check(kernel, q, k, v)
    rep = H // Hkv
    out_r, lse_r = attend(kernel, q, k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1))
    torch.testing.assert_close(out, out_r, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(lse, lse_r, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("Hkv", [1, 2])
def test_gqa_with_per_head_mask_and_causal(device, kernel, gen, Hkv):
    # The mask's head axis counts query heads, not kv heads.
    q, k, v = qkv(gen, B=2, H=H, Hkv=Hkv, L=45, S=70, device=device)
    check(kernel, q, k, v, mask=bool_mask((1, H, 45, 70), gen, device=device), causal="bottom_right")


def test_kv_heads_are_not_mixed_up(device, kernel, gen):
    # Each kv head holds a constant V: every query head's output must be exactly its group's constant.
    q, k, _ = qkv(gen, B=1, H=H, Hkv=3, L=20, S=30, device=device)
    v = torch.arange(3, dtype=torch.float32, device=device)[None, :, None, None].expand(1, 3, 30, 4).contiguous()
    out, _ = attend(kernel, q, k, v)
    expect = torch.tensor([0, 0, 1, 1, 2, 2], dtype=torch.float32, device=device)[None, :, None, None]
    torch.testing.assert_close(out, expect.expand_as(out), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_mqa_half_precision_decode(device, kernel, gen, dtype):
    q, k, v = qkv(gen, B=2, H=8, Hkv=1, L=1, S=799, E=64, dtype=dtype, device=device)
    check(kernel, q, k, v)
