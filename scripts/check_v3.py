"""On a GPU: v3_mma against the float64 reference on odd shapes and every API feature, then
timings beside SDPA's backends. Prints one line per failure and a short table last.

    python scripts/check_v3.py [--quick] [--no-bench] [--json OUT.json]
    python scripts/check_v3.py --rows 16 32 --modes bf16 f16 --ab   correctness of both rows-per-warp
        variants (FLASH_ATTN_EXT_V3_ROWS, read by the launcher on every call), then the A/B timing grid
        (rows 16 vs rows 32 vs SDPA flash; bf16/fp16, E 64/128/256, N 1024/4096/16384, causal and not)
"""
import argparse
import itertools
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import flash_attn_ext as fa
from flash_attn_ext.reference import attention_reference

DEV = "cuda"
FLOOR = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
MODES = [("bf16", torch.bfloat16, "auto"), ("f16", torch.float16, "auto"),
         ("3xtf32", torch.float32, "3xtf32"), ("tf32", torch.float32, "tf32")]
FP32_TOL = {"3xtf32": 1e-5, "tf32": 5e-3}  # relative to max |ref|
failures = []
stats = {}


def rand(*shape, dtype):
    return torch.randn(*shape, device=DEV, dtype=torch.float32).to(dtype)


def check(name, mode, q, k, v, mask=None, causal=False, scale=None, prec="auto"):
    out, lse = fa.flash_attention(q, k, v, scale=scale, mask=mask, causal=causal, return_lse=True,
                                  kernel="v3_mma", float32_precision=prec)
    ref, ref_lse = attention_reference(q, k, v, scale=scale, mask=mask, causal=causal)
    err = (out.double() - ref).abs().max().item() if ref.numel() else 0.0
    amax = ref.abs().max().item() if ref.numel() else 0.0
    if q.dtype == torch.float32:
        tol = FP32_TOL[mode] * max(amax, 1e-3)
    else:
        low, _ = attention_reference(q, k, v, scale=scale, mask=mask, causal=causal, dtype=q.dtype)
        base = (low.double() - ref).abs().max().item() if ref.numel() else 0.0
        tol = 2 * base + FLOOR[q.dtype] * max(amax, 1.0)
    fin = torch.isfinite(ref_lse)
    lse_ok = torch.equal(fin, torch.isfinite(lse)) and (
        not fin.any() or (lse[fin].double() - ref_lse[fin]).abs().max().item() <= 1e-2 + 1e-3 * ref_lse[fin].abs().max().item())
    ok = math.isfinite(err) and err <= tol and lse_ok and not torch.isnan(out).any().item()
    s = stats.setdefault(f"{mode}/rows={os.environ.get('FLASH_ATTN_EXT_V3_ROWS', 'default')}", [0, 0, 0.0])
    s[0] += 1
    s[1] += ok
    s[2] = max(s[2], err / max(amax, 1e-6))
    if not ok:
        failures.append(f"{mode} rows={os.environ.get('FLASH_ATTN_EXT_V3_ROWS', 'default')} {name}: err {err:.3g} tol {tol:.3g} lse_ok {lse_ok} nan {torch.isnan(out).any().item()}")
        print("FAIL", failures[-1], flush=True)  # at once: a run cut by a timeout still shows it
    return ok


def correctness(quick, modes=None):
    Ls = [1, 97, 113, 1025] if not quick else [1, 113]
    # 96, 160, 192: rows of 12, 20, 24 16-byte chunks (tile_copy.cuh's generic loop); above 128: split K/V stages
    Es = [8, 40, 59, 64, 80, 96, 111, 128, 150, 160, 192, 256]
    MODES = [m for m in globals()["MODES"] if modes is None or m[0] in modes]
    for (mode, dt, prec), E in itertools.product(MODES, Es):
        for L, S in ([(97, 113), (113, 97), (1025, 1025), (1, 1025), (1025, 1)] if not quick else [(113, 97)]):
            B, H = 2, 3
            q, k, v = rand(B, H, L, E, dtype=dt), rand(B, H, S, E, dtype=dt), rand(B, H, S, E, dtype=dt)
            check(f"L{L} S{S} E{E}", mode, q, k, v, prec=prec)
            for causal in ("top_left", "bottom_right"):
                check(f"L{L} S{S} E{E} {causal}", mode, q, k, v, causal=causal, prec=prec)
    for mode, dt, prec in MODES:
        L, S, E = 113, 257, 64
        # E != Ev, GQA, explicit and negative scale
        q, k, v = rand(2, 8, L, E, dtype=dt), rand(2, 2, S, E, dtype=dt), rand(2, 2, S, 40, dtype=dt)
        check("gqa Ev40", mode, q, k, v, prec=prec)
        check("gqa Ev40 causal", mode, q, k, v, causal=True, prec=prec)
        check("scale 0.3", mode, q, k, v, scale=0.3, prec=prec)
        check("scale -0.2", mode, q, k, v, scale=-0.2, prec=prec)
        check("scale 0", mode, q, k, v, scale=0.0, prec=prec)
        q2, k2, v2 = rand(1, 4, 97, 128, dtype=dt), rand(1, 1, 300, 128, dtype=dt), rand(1, 1, 300, 256, dtype=dt)
        check("mqa E128 Ev256 br", mode, q2, k2, v2, causal="bottom_right", prec=prec)
        # masks: bool / float in every broadcast form, with causal
        B, H = 2, 4
        q, k, v = rand(B, H, L, E, dtype=dt), rand(B, H, S, E, dtype=dt), rand(B, H, S, E, dtype=dt)
        for shape in [(L, S), (1, 1, L, S), (B, 1, L, S), (1, H, L, S), (B, H, L, S), (B, H, 1, S), (L, 1), (S,)]:
            mb = torch.rand(shape, device=DEV) > 0.3
            check(f"bool mask {shape}", mode, q, k, v, mask=mb, prec=prec)
            check(f"bool mask {shape} causal", mode, q, k, v, mask=mb, causal="bottom_right", prec=prec)
            for mdt in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
                mf = torch.randn(shape, device=DEV).to(mdt)
                mf = mf.masked_fill(torch.rand(shape, device=DEV) > 0.8, float("-inf"))
                check(f"float mask {shape} {mdt}", mode, q, k, v, mask=mf, prec=prec)
            check(f"float mask {shape} causal", mode, q, k, v, mask=mf, causal=True, prec=prec)
        # masks above E = 128, where K and V have one stage each (tile_sizes.h kSplitKV)
        qw, kw, vw = rand(2, 2, 130, 256, dtype=dt), rand(2, 2, S, 256, dtype=dt), rand(2, 2, S, 200, dtype=dt)
        mb = torch.rand(130, S, device=DEV) > 0.5
        mb[5] = False
        check("bool mask E256 Ev200 causal", mode, qw, kw, vw, mask=mb, causal="bottom_right", prec=prec)
        mf = torch.randn(2, 1, 130, S, device=DEV).masked_fill(torch.rand(130, S, device=DEV) > 0.6, float("-inf"))
        check("float mask E256 Ev200", mode, qw, kw, vw, mask=mf, prec=prec)
        # stride-0 mask through expand, non-contiguous mask (transposed)
        mb = (torch.rand(S, device=DEV) > 0.5).expand(L, S)
        check("expanded mask", mode, q, k, v, mask=mb, prec=prec)
        mt = (torch.rand(S, L, device=DEV) > 0.5).t()
        check("transposed mask", mode, q, k, v, mask=mt, prec=prec)
        # fully masked rows (and a fully masked batch) -> 0 / -inf
        mb = torch.rand(B, 1, L, S, device=DEV) > 0.5
        mb[:, :, 5] = False
        mb[1] = False
        check("masked rows", mode, q, k, v, mask=mb, prec=prec)
        check("causal br L>S", mode, rand(1, 2, 300, E, dtype=dt), rand(1, 2, 100, E, dtype=dt),
              rand(1, 2, 100, E, dtype=dt), causal="bottom_right", prec=prec)
        # non-contiguous: (B, L, H, E) storage viewed as (B, H, L, E); storage offset 1
        qn = rand(B, L, H, E, dtype=dt).transpose(1, 2)
        kn = rand(B, S, H, E, dtype=dt).transpose(1, 2)
        vn = rand(B, S, H, E, dtype=dt).transpose(1, 2)
        check("bhle-transposed", mode, qn, kn, vn, causal=True, prec=prec)
        qo = rand(B, H, L, E + 1, dtype=dt)[..., 1:]
        ko = rand(B, H, S, E + 1, dtype=dt)[..., 1:]
        check("offset-1 views", mode, qo, ko, v, prec=prec)
        # NaN/Inf in keys hidden from every query must not leak
        kx, vx = k.clone(), v.clone()
        kx[:, :, L:] = float("nan")
        vx[:, :, L:] = float("inf")
        check("nan in hidden keys (causal)", mode, q, kx, vx, causal="top_left", prec=prec)
        mb = torch.ones(L, S, dtype=torch.bool, device=DEV)
        mb[:, 7] = False
        mb[:, 100:140] = False
        kx, vx = k.clone(), v.clone()
        kx[:, :, 7] = float("nan")
        vx[:, :, 100:140] = float("nan")
        check("nan in masked keys", mode, q, kx, vx, mask=mb, prec=prec)
        mf = torch.zeros(L, S, device=DEV)
        mf[:, 100:140] = float("-inf")
        check("nan in -inf bias keys", mode, q, kx, vx, mask=mf.masked_fill(mb.logical_not(), float("-inf")),
              prec=prec)
        # large logits
        check("logits ~1e4", mode, q * 30, k * 30, v, prec=prec)
        # several 128-row query blocks, 32-row warps cut by L, causal both ways, masks with tails
        for L2, S2, E2 in ((300, 300, 64), (257, 1000, 128), (1000, 257, 96), (130, 130, 32)):
            q2, k2, v2 = rand(1, 2, L2, E2, dtype=dt), rand(1, 2, S2, E2, dtype=dt), rand(1, 2, S2, E2, dtype=dt)
            for causal in (False, "top_left", "bottom_right"):
                check(f"L{L2} S{S2} E{E2} {causal}", mode, q2, k2, v2, causal=causal, prec=prec)
            mb2 = torch.rand(L2, S2, device=DEV) > 0.5
            mb2[::7] = False
            check(f"L{L2} S{S2} E{E2} bool mask rows", mode, q2, k2, v2, mask=mb2, causal="bottom_right", prec=prec)
            mf2 = torch.randn(L2, S2, device=DEV).masked_fill(mb2.logical_not(), float("-inf"))
            check(f"L{L2} S{S2} E{E2} float mask rows", mode, q2, k2, v2, mask=mf2, prec=prec)
    if modes is not None and "bf16" not in modes and "f16" not in modes:
        return
    # many (batch, head) pairs: grid beyond 65535
    q = rand(70000, 1, 3, 16, dtype=torch.bfloat16)
    check("B*H=70000", "bf16", q, q, q)
    # CUDA graph capture
    q, k, v = (rand(2, 4, 300, 64, dtype=torch.float16) for _ in range(3))
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fa.flash_attention(q, k, v, kernel="v3_mma")
    torch.cuda.current_stream().wait_stream(s)
    gr = torch.cuda.CUDAGraph()
    with torch.cuda.graph(gr):
        out = fa.flash_attention(q, k, v, causal=True, kernel="v3_mma")
    q.copy_(rand(2, 4, 300, 64, dtype=torch.float16))
    gr.replay()
    torch.cuda.synchronize()
    ref, _ = attention_reference(q, k, v, causal=True)
    err = (out.double() - ref).abs().max().item()
    if not err < 2e-2:
        failures.append(f"graph replay err {err}")
    # 64-bit offsets: B*H*L*E > 2^31, check the last rows
    L = (1 << 31) // 64 + 1024
    q = rand(1, 1, L, 64, dtype=torch.bfloat16)
    k, v = rand(1, 1, 64, 64, dtype=torch.bfloat16), rand(1, 1, 64, 64, dtype=torch.bfloat16)
    out = fa.flash_attention(q, k, v, kernel="v3_mma")
    ref, _ = attention_reference(q[:, :, -2048:], k, v)
    err = (out[:, :, -2048:].double() - ref).abs().max().item()
    if not err < 2e-2:
        failures.append(f"64-bit offsets err {err}")
    del q, out
    torch.cuda.empty_cache()


def fp32_errors():
    """Max error vs float64 at E=128, N=4096 for each float32 mode and SDPA's efficient backend."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 4, 4096, 128, device=DEV) for _ in range(3))
    ref, _ = attention_reference(q, k, v)
    amax = ref.abs().max().item()
    res = {}
    for prec in ("3xtf32", "tf32"):
        out = fa.flash_attention(q, k, v, kernel="v3_mma", float32_precision=prec)
        res[prec] = (out.double() - ref).abs().max().item() / amax
    with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
        res["sdpa_efficient"] = (F.scaled_dot_product_attention(q, k, v).double() - ref).abs().max().item() / amax
    return res


def bench_ms(fn):
    import triton.testing as tt

    return tt.do_bench(fn, warmup=25, rep=80, return_mode="median")


def sdpa(backend, q, k, v, mask=None, causal=False):
    def run():
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    try:
        run()
        return run
    except RuntimeError:
        return None


def bench(quick):
    rows = []
    Ns = [512, 1024, 2048, 4096, 8192, 16384] if not quick else [1024, 4096, 16384]
    backends = [("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION),
                ("eff", SDPBackend.EFFICIENT_ATTENTION)]

    def point(tag, dt, E, N, causal, mask=None, prec="auto", extra=()):
        B, H = max(16384 // N, 1), 2048 // E
        q, k, v = (torch.randn(B, H, N, E, device=DEV, dtype=dt) for _ in range(3))
        flops = 4 * B * H * N * N * E / (2 if causal else 1)
        r = {"case": tag, "dtype": str(dt).split(".")[1], "E": E, "N": N, "causal": causal}
        ms = bench_ms(lambda: fa.flash_attention(q, k, v, mask=mask, causal=causal, kernel="v3_mma",
                                                 float32_precision=prec))
        r["v3"] = flops / ms / 1e9
        for name, be in backends:
            fn = sdpa(be, q, k, v, mask, causal)
            r[name] = flops / bench_ms(fn) / 1e9 if fn is not None else float("nan")
        for name, fn in extra:
            r[name] = flops / bench_ms(lambda: fn(q, k, v)) / 1e9
        rows.append(r)
        print(json.dumps(r), flush=True)

    dtypes = (torch.bfloat16,) if quick else (torch.bfloat16, torch.float16)
    for dt, E, N, causal in itertools.product(dtypes, (64, 128), Ns, (False, True)):
        point("std", dt, E, N, causal)
    for N, causal in itertools.product([4096] if quick else [1024, 4096, 16384], (False, True)):
        point("E256", torch.bfloat16, 256, N, causal)
    for N in [4096] if quick else [1024, 4096]:
        mask = torch.rand(N, N, device=DEV) > 0.5
        unmasked = ("v3_nomask", lambda q, k, v: fa.flash_attention(q, k, v, kernel="v3_mma"))
        point("mask50", torch.bfloat16, 128, N, False, mask=mask, extra=(unmasked,))
    for prec in ("3xtf32", "tf32"):
        point("fp32-" + prec, torch.float32, 128, 4096, False, prec=prec)
    return rows


def ab_grid():
    """rows 16 vs rows 32 vs SDPA flash (TFLOP/s), the issue's grid at N 1024/4096/16384."""
    rows = []
    for dt, E, N, causal in itertools.product((torch.bfloat16, torch.float16), (64, 128, 256), (1024, 4096, 16384),
                                             (False, True)):
        B, H = max(16384 // N, 1), 2048 // E
        q, k, v = (torch.randn(B, H, N, E, device=DEV, dtype=dt) for _ in range(3))
        flops = 4 * B * H * N * N * E / (2 if causal else 1)
        r = {"dtype": str(dt).split(".")[1], "E": E, "N": N, "causal": causal}
        for tag in ("16", "32"):
            os.environ["FLASH_ATTN_EXT_V3_ROWS"] = tag
            r["r" + tag] = flops / bench_ms(lambda: fa.flash_attention(q, k, v, causal=causal, kernel="v3_mma")) / 1e9
        os.environ.pop("FLASH_ATTN_EXT_V3_ROWS", None)
        r["default"] = flops / bench_ms(lambda: fa.flash_attention(q, k, v, causal=causal, kernel="v3_mma")) / 1e9
        fn = sdpa(SDPBackend.FLASH_ATTENTION, q, k, v, None, causal)
        r["flash"] = flops / bench_ms(fn) / 1e9 if fn is not None else float("nan")
        rows.append(r)
        print(json.dumps(r), flush=True)
        del q, k, v
    return rows


def print_ab(rows):
    print(f"\n{'dtype':8} {'E':>4} {'N':>6} {'cau':>3} {'r16':>6} {'r32':>6} {'dflt':>6} {'flash':>6} "
          f"{'r16/fl':>6} {'r32/fl':>6} {'r32/16':>6}")
    for r in rows:
        print(f"{r['dtype']:8} {r['E']:4} {r['N']:6} {int(r['causal']):3} {r['r16']:6.1f} {r['r32']:6.1f} "
              f"{r['default']:6.1f} {r['flash']:6.1f} {r['r16'] / r['flash']:6.2f} {r['r32'] / r['flash']:6.2f} "
              f"{r['r32'] / r['r16']:6.2f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-bench", action="store_true")
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("--rows", nargs="+", default=None, help="FLASH_ATTN_EXT_V3_ROWS values to check in turn")
    ap.add_argument("--modes", nargs="+", default=None, help="subset of bf16 f16 3xtf32 tf32")
    ap.add_argument("--ab", action="store_true", help="rows 16 vs 32 vs SDPA flash grid instead of the bench")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.manual_seed(0)
    if not args.no_check:
        for rv in args.rows or [None]:
            if rv is None:
                os.environ.pop("FLASH_ATTN_EXT_V3_ROWS", None)
            else:
                os.environ["FLASH_ATTN_EXT_V3_ROWS"] = rv
            correctness(args.quick, args.modes)
            print(f"correctness rows={rv or 'default'} done, {len(failures)} failures so far", flush=True)
        os.environ.pop("FLASH_ATTN_EXT_V3_ROWS", None)
        for mode, (n, ok, rel) in stats.items():
            print(f"correctness {mode}: {ok}/{n} passed, max err/max|ref| {rel:.2e}")
        print("fp32 max error / max|ref| at E=128 N=4096:", fp32_errors())
    if args.no_check:
        print("fp32 max error / max|ref| at E=128 N=4096:", fp32_errors())
    ab = ab_grid() if args.ab else []
    rows = [] if args.no_bench or args.ab else bench(args.quick)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"failures": failures, "stats": stats, "bench": rows, "ab": ab}, f, indent=1)
    if ab:
        print_ab(ab)
    if rows:
        print(f"\n{'case':8} {'dtype':8} {'E':>4} {'N':>6} {'cau':>3} {'v3':>6} {'flash':>6} {'cudnn':>6} {'eff':>6} "
              f"{'v3/fl':>6} {'v3/eff':>6}")
        for r in rows:
            print(f"{r['case']:8} {r['dtype']:8} {r['E']:4} {r['N']:6} {int(r['causal']):3} {r['v3']:6.1f} "
                  f"{r['flash']:6.1f} {r['cudnn']:6.1f} {r['eff']:6.1f} {r['v3'] / r['flash']:6.2f} "
                  f"{r['v3'] / r['eff']:6.2f}" + (f"  nomask {r['v3_nomask']:.1f}" if "v3_nomask" in r else ""))
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
