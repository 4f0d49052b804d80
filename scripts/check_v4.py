"""On an H200: v4_wgmma against the float64 reference on odd shapes (tails, causal both ways,
GQA, strided views, hidden NaN keys, large logits, negative scale), a repeat-run race check,
then forward timings beside SDPA's flash and cuDNN backends. Short table last.

Each variant named in V4_VARIANTS (comma-separated, see VARIANTS below) gets the whole sweep;
those in V4_BENCH are timed side by side. --head-dims picks the E (== Ev) of both, 64,128,192,256 by default.

    python scripts/check_v4.py [--no-bench] [--no-check] [--json OUT.json] [--ns 1024,4096] [--dtypes bfloat16]
                               [--head-dims 256]
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
failures, stats = [], {}


def rand(*shape, dtype):
    return torch.randn(*shape, device=DEV, dtype=torch.float32).to(dtype)


def check(name, q, k, v, causal=False, scale=None, kernel="v4_wgmma", mask=None):
    out, lse = fa.flash_attention(q, k, v, scale=scale, mask=mask, causal=causal, return_lse=True, kernel=kernel)
    ref, ref_lse = attention_reference(q, k, v, scale=scale, mask=mask, causal=causal)
    low, _ = attention_reference(q, k, v, scale=scale, mask=mask, causal=causal, dtype=q.dtype)
    err = (out.double() - ref).abs().max().item()
    amax = ref.abs().max().item()
    low_err = (low.double() - ref).abs().max().item()
    # PyTorch's own float16 run can overflow where ours does not (at E = 256 with logits ~1e4, q.k
    # passes 65504 before the scale is applied): then the bound is four units of the dtype's floor.
    if not math.isfinite(low_err):
        low_err = 1.5 * FLOOR[q.dtype] * max(amax, 1.0)
    tol = 2 * low_err + FLOOR[q.dtype] * max(amax, 1.0)
    fin = torch.isfinite(ref_lse)
    lse_ok = torch.equal(fin, torch.isfinite(lse)) and (
        not fin.any() or (lse[fin].double() - ref_lse[fin]).abs().max().item()
        <= 1e-2 + 1e-3 * ref_lse[fin].abs().max().item())
    nan = torch.isnan(out).any().item()
    # Rows that see no key: exactly 0 and -inf (the reference gives the same; checked apart from the
    # tolerance so a wrong "empty row" cannot hide under it).
    empty = ~fin
    empty_ok = not empty.any() or (bool((out[empty] == 0).all()) and bool((lse[empty] == float("-inf")).all()))
    ok = math.isfinite(err) and err <= tol and lse_ok and not nan and empty_ok
    key = str(q.dtype).split(".")[1] + " " + name.split(" ")[0]
    s = stats.setdefault(key, [0, 0, 0.0])
    s[0] += 1
    s[1] += ok
    s[2] = max(s[2], err / max(amax, 1e-6))
    if not ok:
        failures.append(f"{key} {name}: err {err:.3g} tol {tol:.3g} lse_ok {lse_ok} nan {nan} empty_ok {empty_ok}")
    return out, lse


def blocky_mask(shape, p=0.5):
    """Random keep with whole 128 x 128 tiles hidden / kept and a few fully masked rows: every tile
    class of the v4 pre-pass (none, all, partial) and rows with no visible key."""
    keep = torch.rand(shape, device=DEV) < p
    if shape[-1] > 1 and shape[-2] > 1:
        keep[..., :128, 128:256] = False
        keep[..., 128:256, :128] = True
        keep[..., 5:9, :] = False
    return keep


def masked_correctness(loop):
    """Bool masks through v4 (bits packed per 128 x 128 tile): broadcast forms read in place, tails,
    causal both ways with the mask, fully masked rows and blocks, GQA, NaN at keys the mask hides."""
    set_variant(loop)
    shapes = [(97, 113), (300, 257), (1025, 1025), (1, 1025), (1025, 1), (128, 256), (640, 384), (257, 2100)]
    B, H = 2, 3
    for dt, E in itertools.product((torch.bfloat16, torch.float16), (64, 128)):
        for L, S in shapes:
            q, k, v = rand(B, H, L, E, dtype=dt), rand(B, H, S, E, dtype=dt), rand(B, H, S, E, dtype=dt)
            forms = {"LS": (L, S), "B1LS": (B, 1, L, S), "1HLS": (1, H, L, S), "BHLS": (B, H, L, S),
                     "B11S": (B, 1, 1, S), "L1": (L, 1)}
            for (fname, shape), causal in itertools.product(forms.items(), (False, "top_left", "bottom_right")):
                check(f"{loop} mask {fname} L{L} S{S} E{E} causal={causal}", q, k, v, causal=causal,
                      mask=blocky_mask(shape))
            # Views: an expanded (stride-0) (L, S) mask and a transposed-storage one.
            m = blocky_mask((L, S))
            check(f"{loop} mask expanded L{L} S{S} E{E}", q, k, v, mask=m.expand(B, H, L, S))
            check(f"{loop} mask transposed L{L} S{S} E{E}", q, k, v, causal="bottom_right",
                  mask=m.t().contiguous().t())
        L, S = 333, 517
        q, k, v = rand(2, 8, L, E, dtype=dt), rand(2, 2, S, E, dtype=dt), rand(2, 2, S, E, dtype=dt)
        for causal in (False, "top_left", "bottom_right"):
            check(f"{loop} mask gqa E{E} causal={causal}", q, k, v, causal=causal, mask=blocky_mask((2, 8, L, S)))
        for sc in (-0.2, 0.0):
            check(f"{loop} mask scale {sc} E{E}", q, k, v, scale=sc, causal="bottom_right", mask=blocky_mask((L, S)))
        for p in (0.0, 1.0, 0.02):
            check(f"{loop} mask keep={p} E{E}", q, k, v, mask=torch.rand(L, S, device=DEV) < p)
            check(f"{loop} mask keep={p} E{E} causal", q, k, v, mask=torch.rand(L, S, device=DEV) < p, causal=True)
        # Keys the mask hides from every query (key padding) hold NaN/Inf: the result must not move.
        pad = torch.ones(2, 1, 1, S, dtype=torch.bool, device=DEV)
        pad[0, ..., 200:] = False
        pad[1, ..., 7] = pad[1, ..., 130:140] = False
        clean, clean_lse = check(f"{loop} mask key padding E{E}", q, k, v, mask=pad)
        kx, vx = k.clone(), v.clone()
        hidden = ~pad[:, 0, 0, :]
        kx[hidden[:, None, :, None].expand_as(kx)] = float("nan")
        vx[hidden[:, None, :, None].expand_as(vx)] = float("inf")
        out, lse = fa.flash_attention(q, kx, vx, mask=pad, return_lse=True, kernel="v4_wgmma")
        if not (torch.equal(out, clean) and torch.equal(lse, clean_lse)):
            failures.append(f"{loop} {dt} E{E}: NaN/Inf at keys the mask hides from every query changed the result")
        # Many CTAs reading one (L, S) slice, more work items than SMs, a long key range.
        q, k, v = (rand(2, 16, 1500, E, dtype=dt) for _ in range(3))
        for causal in (False, "top_left"):
            check(f"{loop} mask many items L1500 E{E} causal={causal}", q, k, v, causal=causal,
                  mask=torch.rand(1500, 1500, device=DEV) < 0.5)
        q, k, v = rand(1, 8, 256, E, dtype=dt), rand(1, 2, 16000, E, dtype=dt), rand(1, 2, 16000, E, dtype=dt)
        check(f"{loop} mask long S16000 gqa E{E}", q, k, v, mask=blocky_mask((1, 1, 256, 16000)), causal="bottom_right")
        # The same inputs twice must give the same bits.
        q, k, v = (rand(4, 16, 2048, E, dtype=dt) for _ in range(3))
        m = torch.rand(2048, 2048, device=DEV) < 0.5
        for causal in (False, True):
            a = fa.flash_attention(q, k, v, mask=m, causal=causal, kernel="v4_wgmma")
            b = fa.flash_attention(q, k, v, mask=m, causal=causal, kernel="v4_wgmma")
            if not torch.equal(a, b):
                failures.append(f"{loop} {dt} E{E} mask causal={causal}: two runs differ")
    # Float masks stay on v3: explain must say so.
    q, k, v = (rand(1, 2, 64, 128, dtype=torch.bfloat16) for _ in range(3))
    why_bool = fa.explain(q, k, v, mask=torch.rand(64, 64, device=DEV) < 0.5)
    why_float = fa.explain(q, k, v, mask=torch.zeros(64, 64, device=DEV))
    print("explain (bool mask):", why_bool)
    print("explain (float mask):", why_float)
    if why_bool["kernel"] != "v4_wgmma" or why_float["kernel"] != "v3_mma" or "float" not in str(why_float):
        failures.append(f"explain with masks: {why_bool} / {why_float}")
    clear_variant()


def bench_mask(dt=torch.bfloat16, E=128, N=4096):
    """The issue's shape (B*N = 16k, H = 2048 / E) with masks: v4 masked vs v4 unmasked vs v3 masked vs
    SDPA efficient and cuDNN with the same mask. TFLOP/s counted as if unmasked (/2 with causal)."""
    B, H = max(16384 // N, 1), 2048 // E
    q, k, v = (torch.randn(B, H, N, E, device=DEV, dtype=dt) for _ in range(3))
    rand50 = torch.rand(N, N, device=DEV) < 0.5
    pad = torch.ones(B, 1, 1, N, dtype=torch.bool, device=DEV)
    for b in range(B):
        pad[b, ..., N - (b + 1) * N // (2 * B):] = False  # key padding: 1/8 .. 1/2 of the keys
    cases = [("rand50 (L,S)", rand50, False), ("rand50 (L,S) causal", rand50, True),
             ("all-true (L,S)", torch.ones(N, N, dtype=torch.bool, device=DEV), False),
             ("key padding (B,1,1,S)", pad, False)]
    rows = []
    for name, mask, causal in cases:
        flops = 4 * B * H * N * N * E / (2 if causal else 1)
        r = {"mask": name, "dtype": str(dt).split(".")[1], "E": E, "N": N, "causal": causal}
        ours = {"v4_mask": ("v4_wgmma", mask), "v4_nomask": ("v4_wgmma", None), "v3_mask": ("v3_mma", mask)}
        for col, (kern, m) in ours.items():
            r[col] = flops / bench_ms(lambda: fa.flash_attention(q, k, v, mask=m, causal=causal, kernel=kern)) / 1e9
        for col, be in (("sdpa_eff", SDPBackend.EFFICIENT_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
            # SDPA takes a bool mask with is_causal=False only: fold causal into the mask for it.
            sm = mask
            if causal:
                sm = mask & torch.ones(N, N, dtype=torch.bool, device=DEV).tril()
            def run(be=be, sm=sm):
                with sdpa_kernel(be):
                    return F.scaled_dot_product_attention(q, k, v, attn_mask=sm)
            try:
                run()
                r[col] = flops / bench_ms(run) / 1e9
            except RuntimeError as e:
                r[col] = float("nan")
                print(f"{col} declined {name}: {str(e).splitlines()[0][:120]}")
        rows.append(r)
        print(json.dumps(r), flush=True)
    return rows


# The environment of each variant: "v4" is the default choice of loop, tile and grid (persistent
# at S <= 4096, at E = 256 S <= 2048); "v4_onecta" the same without the persistent kernel (one CTA per work item);
# "v4_simple" the unpipelined loop on the 128 x 128 tile; "v4_persist" the persistent kernel (one
# CTA per SM) everywhere; "v4_persist7" the same on 7 CTAs, so that even the small shapes of the
# sweep put many work items (and items with no visible key) through each CTA's barrier rings.
# "v4_pp" the default with pingpong between the consumer warpgroups added (E = 256 only: there
# the default has none). "v4_xitem" the persistent kernel everywhere in its cross-item variant
# (the next item's first Q K^T issued with the current item's last P V; NOTES_v4.md step 8),
# "v4_xitem7" the same on 7 CTAs (many items per CTA, so the cross step runs on every shape).
# "v4_narrow" the default without the wide tiles (128 x 176, 192 x 128 causal) at S >= 2048.
# "v4_1cta" the default with E = 64 causal on one CTA per SM (its persistent kernel runs two by default).
# "v4_maxall" the default with every tile's row max taken in the overlapped loops (the softmax without it,
# NOTES_v4.md step 22, off; the unpipelined two-CTA E = 64 kernel keeps it).
# "v4_blocktiles" the default with every consumer warpgroup running all of its block's key tiles (each warpgroup's
# own tiles, NOTES_v4.md step 23, off: causal, and query blocks that end past L).
# "v4_bn80" the default with causal E = 256 on its 80-key tile at every S (the 64-key tile up to S = 1024, step 24,
# off; below E = 256 it runs what v4 runs).
# "v4_whole" the default with every last key tile whole (the E = 256 tile's narrow last tiles off; below
# E = 256 it runs what v4 runs, so the correctness sweep leaves those head dims out for it).
# Any variant with "_g<n>" appended ("v4_g16", "v4_persist_g4", "v4_gall") runs with the causal work
# order's heads grouped by n (FLASH_ATTN_EXT_HEAD_GROUP; kernel.cuh, item_at). "v3" (timing only)
# is the v3_mma rung, beside v4 at the head dims v4 pads.
# E > 128 runs on the E = 256 tile, which has no wide tile and no two-CTA form: there v4_narrow and v4_1cta
# run exactly what v4 runs, so the correctness sweep leaves those head dims out for them (v4_onecta runs the
# one-item grid there, v4 the persistent kernel up to S = 2048; the xitem variants run the plain persistent
# kernel).
VARIANTS = {
    "v4": {},
    "v4_onecta": {"FLASH_ATTN_EXT_V4_PERSISTENT": "0"},
    "v4_simple": {"FLASH_ATTN_EXT_V4_SIMPLE": "1"},
    "v4_persist": {"FLASH_ATTN_EXT_V4_PERSISTENT": "1"},
    "v4_persist7": {"FLASH_ATTN_EXT_V4_PERSISTENT": "1", "FLASH_ATTN_EXT_V4_CTAS": "7"},
    "v4_pp": {"FLASH_ATTN_EXT_V4_PINGPONG": "1"},
    "v4_xitem": {"FLASH_ATTN_EXT_V4_PERSISTENT": "1", "FLASH_ATTN_EXT_V4_XITEM": "1"},
    "v4_xitem7": {"FLASH_ATTN_EXT_V4_PERSISTENT": "1", "FLASH_ATTN_EXT_V4_XITEM": "1", "FLASH_ATTN_EXT_V4_CTAS": "7"},
    "v4_narrow": {"FLASH_ATTN_EXT_V4_WIDE_FROM": "1000000000"},
    "v4_1cta": {"FLASH_ATTN_EXT_V4_E64_2CTA": "0"},
    "v4_whole": {"FLASH_ATTN_EXT_V4_NARROW_TAIL": "0"},
    "v4_maxall": {"FLASH_ATTN_EXT_V4_SKIP_MAX": "0"},
    "v4_bn80": {"FLASH_ATTN_EXT_V4_E256_SHORT_UPTO": "0"},
    "v4_blocktiles": {"FLASH_ATTN_EXT_V4_OWN_TILES": "0"},
}
SAME_AS_V4_AT_E256 = {"v4_narrow", "v4_1cta"}
# ... and those that change only the E = 256 tile, the same as v4 below it.
SAME_AS_V4_BELOW_E256 = {"v4_whole", "v4_bn80"}
LOOPS = os.environ.get("V4_VARIANTS", "v4,v4_onecta,v4_persist7").split(",")
BENCH = os.environ.get("V4_BENCH", "v4,v4_onecta").split(",")


def variant_env(variant):
    base, _, group = variant.rpartition("_g")
    if base in VARIANTS and (group.isdigit() or group == "all"):
        return {**VARIANTS[base], "FLASH_ATTN_EXT_HEAD_GROUP": "1000000000" if group == "all" else group}
    return VARIANTS.get(variant, {})


def set_variant(variant):
    clear_variant()
    os.environ.update(variant_env(variant))


def clear_variant():
    for env in [*VARIANTS.values(), {"FLASH_ATTN_EXT_HEAD_GROUP": ""}]:
        for name in env:
            os.environ.pop(name, None)


def correctness(loop, head_dims):
    """The whole sweep for one variant."""
    set_variant(loop)
    shapes = [(97, 113), (113, 97), (1025, 1025), (1, 1025), (1025, 1), (300, 257), (128, 256), (640, 384)]
    if loop.partition("_g")[0] in SAME_AS_V4_AT_E256:
        head_dims = [E for E in head_dims if E <= 128]
    if loop.partition("_g")[0] in SAME_AS_V4_BELOW_E256:
        head_dims = [E for E in head_dims if E > 128]
    for dt, E in itertools.product((torch.bfloat16, torch.float16), head_dims):
        for L, S in shapes:
            q, k, v = rand(2, 3, L, E, dtype=dt), rand(2, 3, S, E, dtype=dt), rand(2, 3, S, E, dtype=dt)
            for causal in (False, "top_left", "bottom_right"):
                check(f"{loop} L{L} S{S} E{E} causal={causal}", q, k, v, causal=causal)
        L, S = 333, 517
        q, k, v = rand(2, 8, L, E, dtype=dt), rand(2, 2, S, E, dtype=dt), rand(2, 2, S, E, dtype=dt)
        check(f"{loop} gqa E{E}", q, k, v)
        check(f"{loop} gqa E{E} causal", q, k, v, causal=True)
        check(f"{loop} gqa E{E} br", q, k, v, causal="bottom_right")
        kx, vx = k.clone(), v.clone()
        kx[:, :, L:] = float("nan")
        vx[:, :, L:] = float("inf")
        check(f"{loop} nan in hidden keys E{E}", q, kx, vx, causal="top_left")
        for sc in (0.3, -0.2, 0.0):
            check(f"{loop} scale {sc} E{E}", q, k, v, scale=sc)
        qn = rand(2, L, 4, E, dtype=dt).transpose(1, 2)
        kn, vn = rand(2, S, 4, E, dtype=dt).transpose(1, 2), rand(2, S, 4, E, dtype=dt).transpose(1, 2)
        check(f"{loop} bhle-transposed E{E}", qn, kn, vn, causal=True)
        check(f"{loop} causal br L>S E{E}", rand(1, 2, 300, E, dtype=dt), rand(1, 2, 100, E, dtype=dt),
              rand(1, 2, 100, E, dtype=dt), causal="bottom_right")
        check(f"{loop} logits ~1e4 E{E}", q * 30, k * 30, v)
        # More work items than SMs (each CTA of the persistent kernel runs several), rows that
        # see no key at all in whole query blocks, and a long key range.
        q, k, v = (rand(2, 16, 1500, E, dtype=dt) for _ in range(3))
        for causal in (False, "top_left", "bottom_right"):
            check(f"{loop} many items L1500 E{E} causal={causal}", q, k, v, causal=causal)
        check(f"{loop} empty blocks br L1000 S300 E{E}", rand(1, 40, 1000, E, dtype=dt),
              rand(1, 40, 300, E, dtype=dt), rand(1, 40, 300, E, dtype=dt), causal="bottom_right")
        q, k, v = rand(1, 8, 256, E, dtype=dt), rand(1, 2, 16000, E, dtype=dt), rand(1, 2, 16000, E, dtype=dt)
        for causal in (False, "bottom_right"):
            check(f"{loop} long S16000 gqa E{E} causal={causal}", q, k, v, causal=causal)
        # A moving error is a race: the same inputs twice must give the same bits.
        q, k, v = (rand(4, 16, 2048, E, dtype=dt) for _ in range(3))
        for causal in (False, True):
            a = fa.flash_attention(q, k, v, causal=causal, kernel="v4_wgmma")
            b = fa.flash_attention(q, k, v, causal=causal, kernel="v4_wgmma")
            if not torch.equal(a, b):
                failures.append(f"{loop} {dt} E{E} causal={causal}: two runs differ")
    clear_variant()


def explain_check():
    q, k, v = (rand(1, 2, 64, 128, dtype=torch.bfloat16) for _ in range(3))
    chosen = fa.explain(q, k, v)
    if chosen["kernel"] != "v4_wgmma":
        failures.append(f"auto picked {chosen}")
    print("explain (bf16 E128):", chosen)
    chosen = fa.explain(*(rand(1, 2, 64, 256, dtype=torch.bfloat16) for _ in range(3)))
    if chosen["kernel"] != "v4_wgmma":
        failures.append(f"auto picked {chosen} at E=256")
    print("explain (bf16 E256):", chosen)
    print("explain (E=96):", fa.explain(*(rand(1, 2, 64, 96, dtype=torch.bfloat16) for _ in range(3))))


def bench_ms(fn):
    import triton.testing as tt

    return tt.do_bench(fn, warmup=25, rep=80, return_mode="median")


def bench(Ns, dtypes, head_dims, which="both"):
    rows = []
    causals = {"both": (False, True), "yes": (True,), "no": (False,)}[which]
    for dt, E, N, causal in itertools.product(dtypes, head_dims, Ns, causals):
        B, H = max(16384 // N, 1), 2048 // E
        q, k, v = (torch.randn(B, H, N, E, device=DEV, dtype=dt) for _ in range(3))
        flops = 4 * B * H * N * N * E / (2 if causal else 1)
        r = {"dtype": str(dt).split(".")[1], "E": E, "N": N, "causal": causal}
        for loop in BENCH:
            set_variant(loop)
            kernel = "v3_mma" if loop == "v3" else "v4_wgmma"
            r[loop] = flops / bench_ms(lambda: fa.flash_attention(q, k, v, causal=causal, kernel=kernel)) / 1e9
            clear_variant()
        for name, be in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
            def run(be=be):
                with sdpa_kernel(be):
                    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            try:
                run()
                r[name] = flops / bench_ms(run) / 1e9
            except RuntimeError:
                r[name] = float("nan")
        rows.append(r)
        print(json.dumps(r), flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-bench", action="store_true")
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--ns", default="512,1024,4096,16384")
    ap.add_argument("--dtypes", default="bfloat16,float16")
    ap.add_argument("--head-dims", default="64,128,192,256")
    ap.add_argument("--causal", choices=("both", "yes", "no"), default="both", help="which timing rows")
    ap.add_argument("--mask-only", action="store_true",
                    help="only the bool-mask sweep and the mask timing rows (the unmasked paths are unchanged)")
    ap.add_argument("--no-mask", action="store_true", help="skip the bool-mask sweep and timing rows")
    args = ap.parse_args()
    torch.manual_seed(0)
    head_dims = [int(e) for e in args.head_dims.split(",")]
    if not args.no_check:
        for loop in LOOPS:
            if not args.mask_only:
                correctness(loop, head_dims)
            if not args.no_mask and loop == LOOPS[0]:  # the masked path ignores the variants' switches
                masked_correctness(loop)
        if not args.mask_only:
            explain_check()
        for f in failures:
            print("FAIL", f)
        for key, (n, ok, rel) in stats.items():
            print(f"correctness {key}: {ok}/{n} passed, max err/max|ref| {rel:.2e}")
    dtypes = [getattr(torch, d) for d in args.dtypes.split(",")]
    rows = [] if args.no_bench or args.mask_only else bench([int(n) for n in args.ns.split(",")], dtypes, head_dims,
                                                                       args.causal)
    mask_rows = [] if args.no_bench or args.no_mask else bench_mask()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"failures": failures, "stats": stats, "bench": rows, "bench_mask": mask_rows}, f, indent=1)
    if rows:
        head = "".join(f" {loop:>10}" for loop in BENCH)
        ratios = "".join(f" {loop[:9] + '/cud':>13}" for loop in BENCH)
        print(f"\n{'dtype':8} {'E':>4} {'N':>6} {'cau':>3}{head} {'flash':>6} {'cudnn':>6}{ratios}")
        for r in rows:
            vals = "".join(f" {r[loop]:10.1f}" for loop in BENCH)
            rel = "".join(f" {r[loop] / r['cudnn']:13.2f}" for loop in BENCH)
            print(f"{r['dtype']:8} {r['E']:4} {r['N']:6} {int(r['causal']):3}{vals} {r['flash']:6.1f} {r['cudnn']:6.1f}"
                  f"{rel}")
    if mask_rows:
        print(f"\n{'mask (bf16 E=128 N=4096, TFLOP/s as if unmasked)':48} {'v4_mask':>8} {'v4_nomask':>9} {'v3_mask':>8}"
              f" {'sdpa_eff':>8} {'cudnn':>7} {'v4m/v4':>7} {'v4m/eff':>8} {'v4m/cud':>8}")
        for r in mask_rows:
            print(f"{r['mask']:48} {r['v4_mask']:8.1f} {r['v4_nomask']:9.1f} {r['v3_mask']:8.1f} {r['sdpa_eff']:8.1f}"
                  f" {r['cudnn']:7.1f} {r['v4_mask'] / r['v4_nomask']:7.2f} {r['v4_mask'] / r['sdpa_eff']:8.2f}"
                  f" {r['v4_mask'] / r['cudnn']:8.2f}")
        print("targets (rand50 (L,S)): v4m/v4 >= 0.80 and v4m/eff >= 2.0")
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
