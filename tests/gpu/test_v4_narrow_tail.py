"""The narrow last key tiles of the E = 256 and E = 192 tiles (kernel.cuh, with_tail_width): an item's last
80-key (112-key) tile runs P V over only a multiple of 16 keys when no row of the query block sees more. The key
counts below put the last tile's visible keys on each side of every width (E = 256: 1, 16, 17, 31, 32, 33, 48,
49, 64, 65, 79, 80; E = 192 the same up to 112), without causal through the key tail and with causal through
the query blocks' last rows, on the persistent and the one-item kernels, at E = 256, 192 and head dims padded
to them. The whole-tile form (FLASH_ATTN_EXT_V4_NARROW_TAIL=0) runs the same cases as the baseline. Causal E = 256
at S <= 1024 runs 64-key tiles by default (launch_template.cuh, run_v4_wide): here it stays on the 80-key tile."""
import pytest
import torch

import flash_attn_ext
from support.inputs import qkv
from support.runner import V4_ONE_ITEM, check, needs_sm90

pytestmark = needs_sm90

GRIDS = {"persistent": {}, "one-item": V4_ONE_ITEM}
TAILS = [1, 16, 17, 31, 32, 33, 48, 49, 64, 65, 79, 80]
# (E, key tile, last tile's visible keys)
KEY_TAILS = [(256, 80, t) for t in TAILS] + [(192, 112, t) for t in [1, 16, 17, 47, 48, 49, 96, 97, 111, 112]]


def use(monkeypatch, grid, narrow):
    monkeypatch.setenv("FLASH_ATTN_EXT_V4_E256_SHORT_UPTO", "0")
    for name, value in GRIDS[grid].items():
        monkeypatch.setenv(name, value)
    if not narrow:
        monkeypatch.setenv("FLASH_ATTN_EXT_V4_NARROW_TAIL", "0")


@pytest.mark.parametrize("narrow", [True, False], ids=["narrow", "whole"])
@pytest.mark.parametrize("grid", list(GRIDS))
@pytest.mark.parametrize("E, block_n, tail", KEY_TAILS)
@pytest.mark.parametrize("whole_tiles", [0, 2])
def test_key_tail_widths(gen, monkeypatch, whole_tiles, E, block_n, tail, grid, narrow):
    use(monkeypatch, grid, narrow)
    S = block_n * whole_tiles + tail  # no whole tile before: the item's first tile is its last
    q, k, v = qkv(gen, B=1, H=2, L=130, S=S, E=E, dtype=torch.bfloat16, device="cuda")
    assert flash_attn_ext.explain(q, k, v)["kernel"] == "v4_wgmma"
    check("v4_wgmma", q, k, v)


# Causal: every 128-row query block ends its keys at its last row (+ the offset), so one call covers many
# last-tile widths: top-left L = S = 600 ends blocks at 128, 256, 384, 512, 600 keys (last tiles of 48, 16,
# 64, 32, 40 keys); bottom-right L = 300, S = 457 at 285, 413, 457 (45, 13, 57); L = 50 sees one tile of 50.
CAUSAL_SHAPES = [(600, 600, "top_left"), (300, 457, "bottom_right"), (97, 1025, "top_left"), (50, 1025, "top_left")]


@pytest.mark.parametrize("narrow", [True, False], ids=["narrow", "whole"])
@pytest.mark.parametrize("grid", list(GRIDS))
@pytest.mark.parametrize("L, S, causal", CAUSAL_SHAPES)
@pytest.mark.parametrize("E, dtype", [(256, torch.bfloat16), (256, torch.float16), (200, torch.bfloat16),
                                      (192, torch.bfloat16), (192, torch.float16), (160, torch.bfloat16)], ids=str)
def test_causal_block_ends(gen, monkeypatch, E, dtype, L, S, causal, grid, narrow):
    use(monkeypatch, grid, narrow)
    q, k, v = qkv(gen, B=2, H=2, Hkv=1, L=L, S=S, E=E, dtype=dtype, device="cuda")
    check("v4_wgmma", q, k, v, causal=causal)

