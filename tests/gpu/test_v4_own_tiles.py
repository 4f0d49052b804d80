"""Each consumer warpgroup of v4 runs only the key tiles its own 64 rows need (kernel.cuh, own_keys_end and
pass_over_tiles; benchmarks/NOTES_v4.md step 23). Under causal warpgroup 0 of a 128-row block ends 64 keys
before the block, so on 64- and 80-key tiles it skips the block's last tile, on 128-key tiles it runs that
tile's P V 64 keys wide, and under bottom-right causal with L > S it may have no tile at all while the block's
last warpgroup has some. With or without causal, a warpgroup whose rows all lie past L (the last query
block's padding; E = 64's 192-row block without causal has one or two) runs none, the block's last warpgroup
included. A skipped tile must still release its ring stages and pass its pingpong turns, or the other
warpgroups wait forever (the test hangs) or read a stage the producer refilled (wrong output).

Every loop and tile that takes it: the two-CTA E = 64 kernel (unpipelined), the one-CTA and wide (three
warpgroups) E = 64 tiles, E = 128 on the persistent, one-item, wide (176-key, pingpong) and unpipelined
forms, E = 192 and 256 (80-key tiles, and E = 256's 64-key tiles of causal S <= 1024), small persistent
grids (many items per CTA, so the ring's count runs across skipped tiles), and the TF32 kernel (64-key tiles). Each output is held to the float64 reference, and
the 16-bit kernels' must equal, bit for bit, the output of the same kernel with every warpgroup running the
block's tiles (FLASH_ATTN_EXT_V4_OWN_TILES=0): the tiles skipped hold no key the rows see, so they add exact
zeros, and the lazy rescale leaves O alone when the max stays. The TF32 kernel rescales every tile by
exp2(m c - round(m c)), one ulp from 1, so there the two forms differ in the last bits."""
import pytest
import torch

from support.inputs import qkv
from support.runner import attend, check, needs_sm90

pytestmark = needs_sm90

ONE_ITEM = {"FLASH_ATTN_EXT_V4_PERSISTENT": "0"}
# (name, E, dtype, float32_precision, switches)
KERNELS = [
    ("E64 default", 64, torch.bfloat16, "auto", {}),  # causal: the two-CTA kernel; not: 192-row tiles, pingpong
    ("E64 one-CTA persistent", 64, torch.float16, "auto", {"FLASH_ATTN_EXT_V4_E64_2CTA": "0"}),
    ("E64 wide one-item", 64, torch.bfloat16, "auto", {**ONE_ITEM, "FLASH_ATTN_EXT_V4_WIDE_FROM": "1"}),
    ("E128 persistent", 128, torch.bfloat16, "auto", {}),
    ("E128 persistent 3 CTAs", 128, torch.float16, "auto", {"FLASH_ATTN_EXT_V4_CTAS": "3"}),
    ("E128 one-item", 128, torch.bfloat16, "auto", ONE_ITEM),
    ("E128 wide one-item", 128, torch.float16, "auto", {**ONE_ITEM, "FLASH_ATTN_EXT_V4_WIDE_FROM": "1"}),
    ("E128 unpipelined", 128, torch.bfloat16, "auto", {"FLASH_ATTN_EXT_V4_SIMPLE": "1"}),
    ("E192 persistent", 192, torch.bfloat16, "auto", {}),
    ("E256 persistent 3 CTAs", 256, torch.bfloat16, "auto", {"FLASH_ATTN_EXT_V4_CTAS": "3"}),  # causal: 64-key tiles
    ("E256 80-key persistent", 256, torch.float16, "auto", {"FLASH_ATTN_EXT_V4_E256_SHORT_UPTO": "0"}),
    ("E256 one-item", 256, torch.float16, "auto", ONE_ITEM),
    ("TF32 E128", 128, torch.float32, "tf32", {}),
    ("TF32 E64", 64, torch.float32, "tf32", {}),
]
# (L, S, causal): top-left blocks that end on and off the tiles; bottom-right with L > S, where block 0's
# first warpgroup sees no key (rows 0..99 of 300 see none at S = 200) while its last sees some; a short
# block over many keys; one row. Without causal: last query blocks with one or two warpgroups past L (on
# 192-row blocks, L = 512 and 1000; 300 on 128-row blocks too).
SHAPES = [(600, 600, "top_left"), (300, 200, "bottom_right"), (300, 457, "bottom_right"), (130, 1025, "top_left"),
          (1, 97, "bottom_right"), (512, 333, False), (1000, 300, False), (300, 200, False)]


@pytest.mark.parametrize("L, S, causal", SHAPES, ids=str)
@pytest.mark.parametrize("kernel", KERNELS, ids=[k[0] for k in KERNELS])
def test_own_tiles(gen, monkeypatch, kernel, L, S, causal):
    _, E, dtype, precision, switches = kernel
    for name, value in switches.items():
        monkeypatch.setenv(name, value)
    q, k, v = qkv(gen, B=2, H=3, Hkv=1, L=L, S=S, E=E, dtype=dtype, device="cuda")
    budget = "tf32" if precision == "tf32" else None  # TF32's own budget (support/numerics.py)
    out, lse = check("v4_wgmma", q, k, v, causal=causal, budget_dtype=budget, float32_precision=precision)
    monkeypatch.setenv("FLASH_ATTN_EXT_V4_OWN_TILES", "0")
    block_out, block_lse = attend("v4_wgmma", q, k, v, causal=causal, float32_precision=precision)
    if dtype != torch.float32:
        assert torch.equal(out, block_out)
        assert torch.equal(lse, block_lse)
