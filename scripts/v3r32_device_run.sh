#!/usr/bin/env bash
# On the GPU machine (H200), < 540 s: build (sm_90 only), then, concurrently, v3 correctness with
# FLASH_ATTN_EXT_V3_ROWS=16 and 32 (check_v3.py, 16-bit modes), the v3 pytest subset under the
# default rows, compute-sanitizer memcheck and racecheck on tail-heavy calls of both variants;
# then, alone on the GPU, the A/B timing grid (rows 16 / rows 32 / default / SDPA flash), table last.
# Logs under $OUT.
set -o pipefail
OUT=${OUT:-/tmp/v3r32_out}
mkdir -p "$OUT"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} FLASH_ATTN_EXT_SKIP_NVCC_CHECK=1
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
unset FLASH_ATTN_EXT_V3_ROWS
t0=$(date +%s)
python3 setup.py build_ext --inplace >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"

timeout 200 python3 scripts/check_v3.py --rows 16 32 --modes bf16 f16 --no-bench --json "$OUT/check.json" \
  >"$OUT/check.log" 2>&1 &
p_check=$!
timeout 200 python3 -m pytest -q -n 8 -p no:cacheprovider tests -k "v3" >"$OUT/pytest.log" 2>&1 &
p_test=$!
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
timeout 200 "$SAN" --tool memcheck --error-exitcode 9 python3 scripts/v3_sanitize.py >"$OUT/memcheck.log" 2>&1 &
p_mem=$!
timeout 200 "$SAN" --tool racecheck --error-exitcode 9 python3 scripts/v3_sanitize.py >"$OUT/racecheck.log" 2>&1 &
p_race=$!
wait $p_check; rc_check=$?
wait $p_test; rc_test=$?
wait $p_mem; rc_mem=$?
wait $p_race; rc_race=$?
echo "checks done: $(( $(date +%s) - t0 )) s"

echo "== check_v3 (rc $rc_check)"; grep -E "^FAIL|^correctness|failures$|Error|error" "$OUT/check.log" | head -40
echo "== pytest -k v3, default rows (rc $rc_test)"; tail -4 "$OUT/pytest.log"
echo "== memcheck (rc $rc_mem)"; grep -E "ERROR SUMMARY|v3_sanitize|Error" "$OUT/memcheck.log" | head -8
echo "== racecheck (rc $rc_race)"; grep -E "RACECHECK SUMMARY|ERROR SUMMARY|v3_sanitize|hazard" "$OUT/racecheck.log" | head -8

timeout 150 python3 scripts/check_v3.py --no-check --ab --json "$OUT/ab.json" >"$OUT/ab.log" 2>&1
rc_ab=$?
echo "total: $(( $(date +%s) - t0 )) s; rc check $rc_check pytest $rc_test memcheck $rc_mem racecheck $rc_race ab $rc_ab"
echo "== A/B TFLOP/s (r16 / r32 = FLASH_ATTN_EXT_V3_ROWS, dflt = unset; E=256 has no rows-32 variant) (rc $rc_ab)"
if grep -q '^dtype ' "$OUT/ab.log"; then sed -n '/^dtype /,$p' "$OUT/ab.log" | grep -v "failures$"; else tail -40 "$OUT/ab.log"; fi
