"""The same inputs give the same bits: across repeated runs and (on the CPU) across thread counts."""
import torch

from support.inputs import bool_mask, qkv
from support.runner import attend


def _inputs(gen, device):
    q, k, v = qkv(gen, B=2, H=4, Hkv=2, L=300, S=517, E=64, device=device)
    return q, k, v, bool_mask((2, 1, 300, 517), gen, device=device)


def test_repeated_runs_are_bit_identical(device, kernel, gen):
    q, k, v, mask = _inputs(gen, device)
    first = attend(kernel, q, k, v, mask=mask, causal="bottom_right")
    for _ in range(10):
        again = attend(kernel, q, k, v, mask=mask, causal="bottom_right")
        assert torch.equal(again[0], first[0]) and torch.equal(again[1], first[1])


def test_thread_count_does_not_change_bits(device, kernel, gen):
    q, k, v, mask = _inputs(gen, device)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = attend(kernel, q, k, v, mask=mask, causal=True)
        torch.set_num_threads(max(2, threads))
        many = attend(kernel, q, k, v, mask=mask, causal=True)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one[0], many[0]) and torch.equal(one[1], many[1])
