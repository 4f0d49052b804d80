"""What only a GPU can show: streams, graph capture, a non-current device, 64-bit offsets, grid limits,
repeated-run determinism. Written against the public API; skipped without CUDA."""
import pytest
import torch

import flash_attn_ext
from support.inputs import bool_mask, qkv
from support.numerics import assert_matches_reference
from support.runner import attend, check

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible"),
]


def test_build_has_cuda_kernels():
    assert flash_attn_ext.build_info()["cuda"], "a GPU is visible but this build has no CUDA kernels"
    assert flash_attn_ext.kernels("cuda")


def test_float64_is_cpu_only():
    q = torch.randn(2, 8, 16, dtype=torch.float64, device="cuda")
    with pytest.raises(ValueError, match=r"\bq\b.*dtype"):
        flash_attn_ext.flash_attention(q, q, q)


def test_mixed_devices_are_rejected():
    q = torch.randn(2, 8, 16, device="cuda")
    with pytest.raises(ValueError, match=r"\bk\b.*cpu"):
        flash_attn_ext.flash_attention(q, q.cpu(), q)
    with pytest.raises(ValueError, match=r"\bmask\b.*cpu"):
        flash_attn_ext.flash_attention(q, q, q, mask=torch.ones(8, 8, dtype=torch.bool))


def test_runs_on_the_current_stream(cuda_kernel, gen):
    q, k, v = qkv(gen, B=2, H=4, L=256, S=300, E=64, dtype=torch.float16, device="cuda")
    want = attend(cuda_kernel, q, k, v, causal=True)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(100_000_000)  # the producer is slow: a kernel on another stream would read too early
        q2 = q * 1
        got = attend(cuda_kernel, q2, k, v, causal=True)
    side.synchronize()
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_cuda_graph_capture_and_replay(cuda_kernel, gen):
    shape = dict(B=2, H=4, Hkv=2, L=200, S=333, E=64, dtype=torch.bfloat16, device="cuda")
    static = [t.clone() for t in qkv(gen, **shape)]
    mask = bool_mask((2, 1, 200, 333), gen, device="cuda")
    attend(cuda_kernel, *static, mask=mask, causal="bottom_right")  # skips kernels that decline the inputs
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        flash_attn_ext.flash_attention(*static, mask=mask, causal="bottom_right", kernel=cuda_kernel)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out, lse = flash_attn_ext.flash_attention(
            *static, mask=mask, causal="bottom_right", return_lse=True, kernel=cuda_kernel
        )
    for _ in range(3):
        for dst, src in zip(static, qkv(gen, **shape)):
            dst.copy_(src)
        graph.replay()
        want = attend(cuda_kernel, *static, mask=mask, causal="bottom_right")
        assert torch.equal(out, want[0]) and torch.equal(lse, want[1])


def test_non_current_device(cuda_kernel, gen):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    with torch.cuda.device(0):
        q, k, v = qkv(gen, B=2, H=4, L=130, S=257, E=64, dtype=torch.float16, device="cuda:1")
        out, lse = check(cuda_kernel, q, k, v, causal=True)
        assert out.device == q.device and lse.device == q.device
        with pytest.raises(ValueError, match=r"\bk\b.*cuda:0"):
            flash_attn_ext.flash_attention(q, k.to("cuda:0"), v, kernel=cuda_kernel)


def test_many_heads_beyond_grid_y_limit(cuda_kernel, gen):
    # B*H = 70000 > 65535, the limit of gridDim.y/z: a launch that puts heads there fails or skips heads.
    q, k, v = qkv(gen, B=2, H=35000, Hkv=5000, L=17, S=33, E=32, dtype=torch.float16, device="cuda")
    out, lse = attend(cuda_kernel, q, k, v, causal="bottom_right")
    for b, h in ((0, 0), (1, 17_499), (1, 34_999)):
        hk = h // 7
        assert_matches_reference(out[b, h], lse[b, h], q[b, h], k[b, hk], v[b, hk], causal="bottom_right")
    assert not out.isnan().any()


def test_many_query_blocks_beyond_grid_y_limit(cuda_kernel, gen):
    # L / 64 > 65535 query blocks in one head.
    L = 65536 * 64 + 77
    q, k, v = qkv(gen, B=1, H=1, L=L, S=40, E=64, dtype=torch.float16, device="cuda")
    out, lse = attend(cuda_kernel, q, k, v)
    for rows in (slice(0, 100), slice(L // 2, L // 2 + 100), slice(L - 100, L)):
        assert_matches_reference(out[0, 0, rows], lse[0, 0, rows], q[0, 0, rows], k[0, 0], v[0, 0])


def test_input_offsets_beyond_int32(cuda_kernel, gen):
    # The second batch of k/v starts 2^31 + 64 elements into a buffer: 32-bit offsets wrap around.
    S, E = 300, 64
    stride_b = 2**31 + 64
    buf = torch.empty(stride_b + S * E, dtype=torch.float16, device="cuda")
    k = buf.as_strided((2, 1, S, E), (stride_b, S * E, E, 1))
    q, k_dense, v = qkv(gen, B=2, H=1, L=100, S=S, E=E, dtype=torch.float16, device="cuda")
    k.copy_(k_dense)
    check(cuda_kernel, q, k, v, causal=True)


@pytest.mark.slow
def test_tensors_beyond_int32_elements(cuda_kernel, gen):
    # Every tensor, the output included, has 2^31 + 2^17*128 elements (4 GiB in float16).
    B, H, L, E = 1, 2**17 + 1, 128, 128
    q = torch.randn(B, H, L, E, dtype=torch.float16, device="cuda")
    k = torch.randn(B, H, L, E, dtype=torch.float16, device="cuda")
    v = torch.randn(B, H, L, E, dtype=torch.float16, device="cuda")
    out, lse = attend(cuda_kernel, q, k, v, causal=True)
    for h in (0, H // 2, H - 1):
        assert_matches_reference(out[0, h], lse[0, h], q[0, h], k[0, h], v[0, h], causal=True)


def test_repeated_runs_are_bit_identical(cuda_kernel, gen):
    q, k, v = qkv(gen, B=60, H=4, Hkv=2, L=257, S=513, E=128, dtype=torch.bfloat16, device="cuda")
    first = attend(cuda_kernel, q, k, v, causal="bottom_right")
    for _ in range(100):
        again = flash_attn_ext.flash_attention(q, k, v, causal="bottom_right", return_lse=True, kernel=cuda_kernel)
        assert torch.equal(again[0], first[0]) and torch.equal(again[1], first[1])


def test_deterministic_algorithms_mode(cuda_kernel, gen):
    q, k, v = qkv(gen, B=2, H=4, L=130, S=257, E=64, dtype=torch.float16, device="cuda")
    free = attend(cuda_kernel, q, k, v)
    was = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True)
        strict = attend(cuda_kernel, q, k, v)
    finally:
        torch.use_deterministic_algorithms(was)
    assert torch.equal(free[0], strict[0]) and torch.equal(free[1], strict[1])
