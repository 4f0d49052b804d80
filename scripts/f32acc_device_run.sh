#!/usr/bin/env bash
# On the GPU machine (H200), < 480 s, from the repository root: build, then, concurrently, the v3
# CUDA pytest subset, check_v3.py's float32 sweep (3xTF32 and TF32 against float64) and
# compute-sanitizer memcheck on small float32 v3 calls; then, alone on the GPU, the float32 accuracy
# and speed table of issue 3 (E=128, N=4096, H=16, B=4), printed last. Logs under OUT.
#
#   bash scripts/f32acc_device_run.sh OUT
set -o pipefail
OUT=${1:-${OUT:-/tmp/f32acc_out}}
mkdir -p "$OUT"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} FLASH_ATTN_EXT_SKIP_NVCC_CHECK=1
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 PYTHONPATH=$PWD
unset FLASH_ATTN_EXT_V3_ROWS
t0=$(date +%s)
python3 setup.py build_ext --inplace >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"

timeout 220 python3 -m pytest -q -x -n 16 tests -k "v3 and cuda" -p no:cacheprovider >"$OUT/pytest.log" 2>&1 &
p_test=$!
timeout 220 python3 scripts/check_v3.py --modes 3xtf32 tf32 --no-bench --json "$OUT/check.json" \
  >"$OUT/check.log" 2>&1 &
p_check=$!
# Tails of query and key blocks, causal both ways, GQA, E != Ev, a bool mask whose hidden keys take
# P*V's run-time key mask, a float mask with -inf (the prescale path), E = 64 (two fold groups per
# key tile) and E = 256.
cat >"$OUT/f32_sanitize.py" <<'EOF'
import torch
import flash_attn_ext as fa

torch.manual_seed(0)
calls = 0
for prec in ("3xtf32", "tf32"):
    for E, Ev, L, S, causal in ((128, 128, 257, 300, "top_left"), (128, 64, 300, 130, "bottom_right"),
                                (64, 64, 130, 200, False), (40, 40, 97, 113, True), (256, 256, 70, 90, False)):
        q = torch.randn(1, 4, L, E, device="cuda")
        k, v = torch.randn(1, 2, S, E, device="cuda"), torch.randn(1, 2, S, Ev, device="cuda")
        fa.flash_attention(q, k, v, causal=causal, return_lse=True, kernel="v3_mma", float32_precision=prec)
        calls += 1
    q, k, v = (torch.randn(2, 2, 150, 128, device="cuda") for _ in range(3))
    mb = torch.rand(150, 150, device="cuda") > 0.5
    mb[:, 40:80] = False
    mb[3] = False
    fa.flash_attention(q, k, v, mask=mb, kernel="v3_mma", float32_precision=prec)
    mf = torch.randn(2, 1, 150, 150, device="cuda").masked_fill(mb.logical_not(), float("-inf"))
    fa.flash_attention(q, k, v, mask=mf, return_lse=True, kernel="v3_mma", float32_precision=prec)
    calls += 2
torch.cuda.synchronize()
print(f"f32_sanitize: {calls} calls done")
EOF
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
timeout 220 "$SAN" --tool memcheck --error-exitcode 9 python3 "$OUT/f32_sanitize.py" >"$OUT/memcheck.log" 2>&1 &
p_mem=$!
wait $p_test; rc_test=$?
wait $p_check; rc_check=$?
wait $p_mem; rc_mem=$?
echo "checks done: $(( $(date +%s) - t0 )) s"
echo "== pytest -k 'v3 and cuda' (rc $rc_test)"; tail -4 "$OUT/pytest.log"
echo "== check_v3 3xtf32 tf32 (rc $rc_check)"
grep -E "^FAIL|^correctness|^fp32 max|failures$|Error" "$OUT/check.log" | head -40
echo "== memcheck (rc $rc_mem)"; grep -E "ERROR SUMMARY|f32_sanitize|Error" "$OUT/memcheck.log" | head -8

# Error of each float32 path against float64 (max|err| / max|ref| over the whole output) and
# TFLOP/s (median of CUDA-event timings of 20 calls after 3 warm-up calls).
cat >"$OUT/f32_table.py" <<'EOF'
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import flash_attn_ext as fa
from flash_attn_ext.reference import attention_reference

B, H, N, E = 4, 16, 4096, 128


def median_ms(fn, warmup=3, reps=20):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def sdpa_eff(q, k, v, causal):
    with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


torch.manual_seed(0)
q, k, v = (torch.randn(B, H, N, E, device="cuda") for _ in range(3))
rows = []
for causal in (False, True):
    ref, _ = attention_reference(q, k, v, causal=causal)
    amax = ref.abs().max().item()
    flops = 4 * B * H * N * N * E / (2 if causal else 1)
    fns = {p: (lambda p=p: fa.flash_attention(q, k, v, causal=causal, kernel="v3_mma", float32_precision=p))
           for p in ("3xtf32", "tf32")}
    fns["sdpa_eff"] = lambda: sdpa_eff(q, k, v, causal)
    r = {}
    for name, fn in fns.items():
        err = (fn().double() - ref).abs().max().item() / amax
        r[name] = (err, flops / median_ms(fn) / 1e9)
    rows.append((causal, r))
    del ref
    torch.cuda.empty_cache()

print(f"float32 B={B} H={H} N={N} E={E}; err = max|out - ref| / max|ref| vs float64; TFLOP/s median of 20")
print(f"{'causal':6} {'3xtf32 err':>10} {'TFLOP/s':>8} {'tf32 err':>9} {'TFLOP/s':>8} {'eff err':>9} {'TFLOP/s':>8}"
      f" {'3x/eff err':>10} {'3x/eff spd':>10} {'tf32/eff spd':>12}")
for causal, r in rows:
    (e3, s3), (e1, s1), (ee, se) = r["3xtf32"], r["tf32"], r["sdpa_eff"]
    print(f"{int(causal):6} {e3:10.2e} {s3:8.1f} {e1:9.2e} {s1:8.1f} {ee:9.2e} {se:8.1f} {e3 / ee:10.2f} "
          f"{s3 / se:10.2f} {s1 / se:12.2f}")
EOF
timeout 120 python3 "$OUT/f32_table.py" >"$OUT/table.log" 2>&1
rc_table=$?
echo "total: $(( $(date +%s) - t0 )) s; rc pytest $rc_test check $rc_check memcheck $rc_mem table $rc_table"
echo "== float32 accuracy and speed (rc $rc_table)"
cat "$OUT/table.log"
