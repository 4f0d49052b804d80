"""Who is measured: each of our kernels by name, and torch's SDPA (and, on CUDA, each SDPA backend).

A provider turns a case's inputs into a zero-argument call. Providers that cannot take an input raise;
the harness records that as "unsupported", never as a crash.
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import importlib
import inspect
import os
import sys
import warnings
from typing import Callable, List, Optional

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def import_library():
    """flash_attn_ext from this checkout when it holds a build (in-place or editable), else the installed one."""
    if glob.glob(os.path.join(ROOT, "flash_attn_ext", "_C*.so")) and ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    return importlib.import_module("flash_attn_ext")


class Unsupported(Exception):
    """A provider refuses this input by design (not a failure of the harness)."""


@dataclasses.dataclass
class Provider:
    name: str
    family: str  # "ours" or "sdpa"
    summary: str
    bind: Callable  # (q, k, v, mask, causal) -> zero-argument callable returning the output
    materialises_scores: bool = False  # holds the (L, S) scores: skipped where they cannot fit

    def call(self, q, k, v, mask, causal) -> Callable[[], torch.Tensor]:
        return self.bind(q, k, v, mask, causal)


def _ours(lib, name: str, options: dict) -> Callable:
    def bind(q, k, v, mask, causal):
        return lambda: lib.flash_attention(q, k, v, mask=mask, causal=causal, kernel=name, **options)

    return bind


def _sdpa(backend) -> Callable:
    def bind(q, k, v, mask, causal):
        L, S = q.shape[-2], k.shape[-2]
        if causal == "bottom_right" and L != S:
            raise Unsupported("SDPA's is_causal is top-left only")
        extra = {"enable_gqa": True} if q.shape[1] != k.shape[1] else {}
        is_causal = bool(causal)
        if backend is None:
            return lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, **extra)
        from torch.nn.attention import sdpa_kernel

        def run():
            with sdpa_kernel([backend]):
                return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, **extra)

        return run

    return bind


def _sdpa_backends(device: str) -> List[Provider]:
    providers = [Provider("sdpa", "sdpa", "torch SDPA, its own backend choice", _sdpa(None))]
    if device != "cuda":
        return providers
    from torch.nn.attention import SDPBackend

    for name, member in (("sdpa_flash", "FLASH_ATTENTION"), ("sdpa_cudnn", "CUDNN_ATTENTION"),
                         ("sdpa_efficient", "EFFICIENT_ATTENTION"), ("sdpa_math", "MATH")):
        backend = getattr(SDPBackend, member, None)
        if backend is not None:
            providers.append(Provider(name, "sdpa", f"torch SDPA forced to {member}", _sdpa(backend),
                                      materialises_scores=member == "MATH"))
    return providers


def discover(device: str, only: Optional[List[str]] = None, float32_precision: Optional[str] = None) -> List[Provider]:
    """Every kernel the library lists for this device, then SDPA; ``only`` keeps names containing any substring.

    ``float32_precision`` is passed to our kernels (None leaves the library's default).
    """
    lib = import_library()
    options = {}
    if float32_precision is not None:
        if "float32_precision" not in inspect.signature(lib.flash_attention).parameters:
            raise ValueError("this build of flash_attn_ext has no float32_precision argument")
        options["float32_precision"] = float32_precision
    providers = [Provider(k["name"], "ours", k["summary"], _ours(lib, k["name"], options),
                          materialises_scores=k["name"] == "naive" or "materialises" in k["summary"])
                 for k in lib.kernels(device)]
    providers += _sdpa_backends(device)
    if only:
        providers = [p for p in providers if any(s in p.name for s in only)]
    return providers


def _first_line(text: str) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def run_checked(fn: Callable[[], torch.Tensor]):
    """Runs fn once; returns (output, None) or (None, why it could not run)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # SDPA says why it refuses in warnings, then raises a generic error
        try:
            return fn(), None
        except Unsupported as exc:
            return None, f"unsupported: {exc}"
        except torch.OutOfMemoryError:
            with contextlib.suppress(Exception):
                torch.cuda.empty_cache()
            return None, "out of memory"
        except (RuntimeError, ValueError, NotImplementedError) as exc:
            why = _first_line(exc) or type(exc).__name__
            hints = [_first_line(w.message) for w in caught if _first_line(w.message)]
            if hints:
                why += f" ({hints[-1]})"
            return None, f"unsupported: {why[:240]}"
