"""float32 backward error against float64 autograd (max |err| / max |ref| per gradient): ours in each
float32_precision, the dense backward (FLASH_ATTN_EXT_BWD_F32=dense) and SDPA's efficient backend. B=1, H=4,
L=S=1024, E=128, causal off and on."""
import os

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import flash_attn_ext as fae
from flash_attn_ext.reference import attention_reference

torch.manual_seed(0)
for causal in (False, True):
    q, k, v = (torch.randn(1, 4, 1024, 128, dtype=torch.float64) for _ in range(3))
    do = torch.randn(1, 4, 1024, 128, dtype=torch.float64)
    ins = [t.clone().requires_grad_(True) for t in (q, k, v)]
    ref = torch.autograd.grad((attention_reference(*ins, causal=causal)[0] * do).sum(), ins)

    def run(fn):
        x = [t.float().cuda().requires_grad_(True) for t in (q, k, v)]
        g = torch.autograd.grad((fn(*x).double() * do.cuda()).sum(), x)
        return " ".join(f"d{n} {((a.double().cpu() - r).abs().max() / r.abs().max()).item():.2e}"
                        for n, a, r in zip("qkv", g, ref))

    def ours(prec, dense=False):
        def f(q, k, v):
            if dense:
                os.environ["FLASH_ATTN_EXT_BWD_F32"] = "dense"
            else:
                os.environ.pop("FLASH_ATTN_EXT_BWD_F32", None)
            return fae.flash_attention(q, k, v, causal=causal, float32_precision=prec)
        return f

    def eff(q, k, v):
        with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    for name, fn in [("auto (3xTF32)", ours("auto")), ("tf32", ours("tf32")), ("ieee (dense)", ours("ieee")),
                     ("dense bwd, auto fwd", ours("auto", True)), ("sdpa efficient", eff)]:
        print(f"causal={int(causal)} {name:22s} {run(fn)}", flush=True)
    os.environ.pop("FLASH_ATTN_EXT_BWD_F32", None)
