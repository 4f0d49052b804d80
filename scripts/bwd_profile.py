"""One forward + backward at the worklog's reference shape (bf16, B=4, H=16, N=4096, E=128), for ncu."""
import torch

import flash_attn_ext as fae

q, k, v = (torch.randn(4, 16, 4096, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
fae.flash_attention(q, k, v).backward(torch.randn(4, 16, 4096, 128, device="cuda", dtype=torch.bfloat16))
torch.cuda.synchronize()
