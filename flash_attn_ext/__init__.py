"""flash_attn_ext: exact attention computed FlashAttention-style, on CPU and CUDA."""
import torch  # noqa: F401  (loads libtorch before our extension, which links against it)

from . import _C  # noqa: F401  (loads the ops into torch.ops.flash_attn_ext)
from .ops import build_info, explain, flash_attention, kernels, naive_attention

__all__ = ["flash_attention", "naive_attention", "explain", "kernels", "build_info"]
__version__ = "0.1.0"
