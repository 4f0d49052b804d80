"""A few small backward calls with tails in every tile, for compute-sanitizer (memcheck / racecheck):
atomic and deterministic dQ, bool and float masks, causal both ways, GQA, odd head dims.
FLOAT32_ONLY=1 runs only the float32 list (bwd_mma's TF32 / 3xTF32 kernels); SIMPLE_ONLY=1 only the
bwd_simple list (the CUDA-core backward: head dims above 128, float32 'ieee', and small head dims forced
there with FLASH_ATTN_EXT_BWD_SIMPLE=force)."""
import os

import torch

import flash_attn_ext as fae


def one(B, H, Hkv, L, S, E, Ev, causal, mask, dtype, precision="auto"):
    q = torch.randn(B, H, L, E, device="cuda", dtype=dtype, requires_grad=True)
    k = torch.randn(B, Hkv, S, E, device="cuda", dtype=dtype, requires_grad=True)
    v = torch.randn(B, Hkv, S, Ev, device="cuda", dtype=dtype, requires_grad=True)
    m = None
    if mask == "bool":
        m = torch.rand(L, S, device="cuda") > 0.3
    elif mask == "float":
        m = torch.randn(H, 1, S, device="cuda").requires_grad_(True)
    fae.flash_attention(q, k, v, mask=m, causal=causal, float32_precision=precision).float().sum().backward()
    torch.cuda.synchronize()


if os.environ.get("SIMPLE_ONLY") == "1":
    # Both head-dim tile shapes (Bc 32 / Br 16 up to 128, Bc 16 / Br 8 at 256), tails, E != Ev, both causal
    # alignments with L < S and L > S, GQA, bool and float masks (the float one with its gradient), 3 dtypes.
    one(1, 4, 2, 37, 53, 256, 200, "bottom_right", "bool", torch.bfloat16)
    one(1, 2, 1, 40, 19, 160, 160, True, "float", torch.float16)
    one(1, 2, 1, 19, 40, 192, 64, "bottom_right", None, torch.float32)
    one(1, 4, 2, 33, 29, 59, 33, "bottom_right", "float", torch.float32, "ieee")
    os.environ["FLASH_ATTN_EXT_BWD_SIMPLE"] = "force"
    one(2, 2, 1, 21, 35, 40, 40, True, "bool", torch.bfloat16)
    one(1, 2, 2, 17, 9, 8, 8, False, None, torch.float16)
    del os.environ["FLASH_ATTN_EXT_BWD_SIMPLE"]
    print("sanitize (bwd_simple): done")
    raise SystemExit(0)

if os.environ.get("FLOAT32_ONLY") != "1":
    for det in (False, True):
        torch.use_deterministic_algorithms(det)
        one(1, 4, 2, 97, 113, 40, 40, "bottom_right", "bool", torch.bfloat16)
        one(1, 2, 1, 70, 65, 59, 33, True, "float", torch.float16)
        one(1, 2, 2, 33, 130, 128, 128, False, None, torch.bfloat16)
    print("sanitize: done")

    # Shapes the Hopper backward takes (FLASH_ATTN_EXT_BWD_VARIANT=wgmma; elsewhere bwd_mma runs them):
    # tails in the key and query blocks, both causal alignments, GQA, E = 64 and 128.
    torch.use_deterministic_algorithms(False)
    one(1, 4, 2, 97, 200, 64, 64, "bottom_right", None, torch.bfloat16)
    one(1, 2, 1, 150, 70, 128, 128, True, None, torch.float16)
    one(2, 2, 2, 65, 129, 128, 128, False, None, torch.bfloat16)
    print("sanitize (wgmma shapes): done")

# float32: every bucket (32, 64, 96, 128), tails, both causal alignments with L < S and L > S, GQA,
# E != Ev, bool and float masks (the float one with its gradient), atomic and deterministic dQ, both precisions.
for det in (False, True):
    torch.use_deterministic_algorithms(det)
    for prec in ("auto", "tf32"):
        one(1, 4, 2, 97, 113, 40, 40, "bottom_right", "bool", torch.float32, prec)
        one(1, 2, 1, 70, 65, 59, 33, True, "float", torch.float32, prec)
    one(1, 2, 2, 33, 130, 128, 128, False, None, torch.float32)
    one(1, 2, 1, 130, 33, 96, 80, "bottom_right", None, torch.float32, "tf32")
    one(2, 2, 2, 65, 1, 16, 16, True, None, torch.float32)
torch.use_deterministic_algorithms(False)
print("sanitize (float32): done")
