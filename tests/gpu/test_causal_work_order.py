"""The causal work orders (csrc/cuda/kernels/causal_order.h, v4's cta_item; benchmarks/NOTES_v4.md step 13):
every order must visit every query block of every head exactly once, or some output rows stay whatever
the allocator left there. Outputs against float64 through each order: v4's persistent kernel with its items
in pairs (nine query blocks per head, so pairs straddle heads; E = 64 and 256, and the cross-item kernel),
v4's one-item grid with heads in L2-sized groups (13 heads: a group of 8, then a partial one), v3's grid
likewise, and each with the group size forced by FLASH_ATTN_EXT_HEAD_GROUP (3: partial last group; more
heads than there are: one group, longest first over all)."""
import pytest
import torch

from support.inputs import qkv
from support.runner import V4_ONE_ITEM, check, needs_sm90

# (name, kernel, switches, H, Hkv, L, S, E, causal). FLASH_ATTN_EXT_V4_CTAS=20 gives the persistent
# kernels a small grid, so that these shapes hand every CTA two pairs or more (the pair order's rule).
PERSIST20 = {"FLASH_ATTN_EXT_V4_PERSISTENT": "1", "FLASH_ATTN_EXT_V4_CTAS": "20"}
CASES = [
    ("v4 pairs E64", "v4_wgmma", PERSIST20, 10, 5, 1100, 1100, 64, "bottom_right"),
    ("v4 pairs E256", "v4_wgmma", PERSIST20, 12, 12, 1000, 1000, 256, "top_left"),
    ("v4 cross-item pairs", "v4_wgmma", {**PERSIST20, "FLASH_ATTN_EXT_V4_XITEM": "1"}, 10, 5, 1100, 1100, 128, True),
    ("v4 persistent one group", "v4_wgmma", {**PERSIST20, "FLASH_ATTN_EXT_HEAD_GROUP": "1000"}, 10, 5, 1100, 1100,
     64, "bottom_right"),
    ("v4 one-item groups", "v4_wgmma", V4_ONE_ITEM, 13, 13, 1100, 1000, 128, "bottom_right"),
    ("v4 one-item groups of 3", "v4_wgmma", {**V4_ONE_ITEM, "FLASH_ATTN_EXT_HEAD_GROUP": "3"}, 13, 13, 1000, 1100, 64,
     "top_left"),
    ("v4 one-item E256 groups", "v4_wgmma", V4_ONE_ITEM, 13, 13, 700, 700, 256, True),
    ("v3 groups", "v3_mma", {}, 13, 13, 1000, 1000, 64, True),
    ("v3 groups of 3", "v3_mma", {"FLASH_ATTN_EXT_HEAD_GROUP": "3"}, 13, 13, 1000, 1100, 128, "bottom_right"),
]


@needs_sm90
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_query_block_once(gen, monkeypatch, case):
    _, kernel, switches, H, Hkv, L, S, E, causal = case
    for name, value in switches.items():
        monkeypatch.setenv(name, value)
    q, k, v = qkv(gen, B=1, H=H, Hkv=Hkv, L=L, S=S, E=E, dtype=torch.bfloat16, device="cuda")
    # The output most likely gets this NaN-filled block back from the caching allocator (same size, just
    # freed), so a query block the order skips leaves NaN behind; any other leftover fails the bound too.
    torch.cuda.empty_cache()
    poison = torch.full((1, H, L, E), float("nan"), dtype=torch.bfloat16, device="cuda")
    del poison
    check(kernel, q, k, v, causal=causal)
