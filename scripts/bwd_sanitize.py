"""A few small backward calls with tails in every tile, for compute-sanitizer (memcheck / racecheck):
atomic and deterministic dQ, bool and float masks, causal both ways, GQA, odd head dims."""
import torch

import flash_attn_ext as fae


def one(B, H, Hkv, L, S, E, Ev, causal, mask, dtype):
    q = torch.randn(B, H, L, E, device="cuda", dtype=dtype, requires_grad=True)
    k = torch.randn(B, Hkv, S, E, device="cuda", dtype=dtype, requires_grad=True)
    v = torch.randn(B, Hkv, S, Ev, device="cuda", dtype=dtype, requires_grad=True)
    m = None
    if mask == "bool":
        m = torch.rand(L, S, device="cuda") > 0.3
    elif mask == "float":
        m = torch.randn(H, 1, S, device="cuda").requires_grad_(True)
    fae.flash_attention(q, k, v, mask=m, causal=causal).float().sum().backward()
    torch.cuda.synchronize()


for det in (False, True):
    torch.use_deterministic_algorithms(det)
    one(1, 4, 2, 97, 113, 40, 40, "bottom_right", "bool", torch.bfloat16)
    one(1, 2, 1, 70, 65, 59, 33, True, "float", torch.float16)
    one(1, 2, 2, 33, 130, 128, 128, False, None, torch.bfloat16)
print("sanitize: done")
