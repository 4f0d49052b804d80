#!/usr/bin/env bash
# On the H200, < 560 s, from the repository root: the checks and timings of a change to v4's softmax
# (NOTES_v4.md step 9). Build; then, concurrently, the whole pytest suite and check_v4.py's sweep over
# the one-item, persistent (7 CTAs) and cross-item (7 CTAs) kernels and the bool-mask kernel; then
# compute-sanitizer (memcheck, synccheck, racecheck over v4_sanitize.py on the persistent kernel, memcheck
# over its --mask list); then, alone on the GPU, the forward timings beside SDPA flash and cuDNN
# (check_v4.py --no-check, V4_BENCH variants, args passed on, e.g. --ns 1024,4096 --head-dims 64,128 --dtypes bfloat16),
# printed last. Logs under OUT.
#
#   bash scripts/v4_softmax_device_run.sh OUT [check_v4.py timing args...]
set -o pipefail
OUT=${1:-${OUT:-/tmp/v4_softmax_out}}
shift || true
mkdir -p "$OUT"
source scripts/device_env.sh
BUDGET_S=560
source scripts/device_clock.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader
build_ext "$OUT/build.log" || exit 1
since "build done"

timeout $(cap 200 250) python3 -m pytest -q -n 12 tests -p no:cacheprovider >"$OUT/pytest.log" 2>&1 &
p_test=$!
V4_VARIANTS=v4,v4_persist7,v4_xitem7 timeout $(cap 220 250) python3 scripts/check_v4.py --no-bench \
  --head-dims 64,128,256 >"$OUT/sweep.log" 2>&1 &
p_sweep=$!
wait $p_test; rc_test=$?
wait $p_sweep; rc_sweep=$?
since "pytest + sweep done"

san() {  # TOOL LOG [script args]: one sanitizer run over v4_sanitize.py, persistent kernel on 7 CTAs
  local tool=$1 log=$2
  shift 2
  (export FLASH_ATTN_EXT_V4_CTAS=7 V4_SAN_E=64,128
   sanitize "$tool" "$OUT/$log.log" "$(cap 120 130)" python3 scripts/v4_sanitize.py "$@")
}
san memcheck memcheck & p1=$!
san synccheck synccheck & p2=$!
san racecheck racecheck & p3=$!
san memcheck memcheck_mask --mask & p4=$!
wait $p1; r1=$?; wait $p2; r2=$?; wait $p3; r3=$?; wait $p4; r4=$?
since "sanitizers done"

V4_BENCH=${V4_BENCH:-v4} timeout $(cap 200 5) python3 scripts/check_v4.py --no-check --no-mask --json "$OUT/bench.json" "$@" \
  >"$OUT/bench.log" 2>&1
rc_bench=$?

echo "== pytest, whole suite (rc $rc_test)"; grep -E "passed|failed|error" "$OUT/pytest.log" | tail -2
grep -E "^FAILED|^ERROR" "$OUT/pytest.log" | head -12
echo "== check_v4 sweep (rc $rc_sweep)"; grep -vE "^explain" "$OUT/sweep.log" | tail -12
for t in memcheck synccheck racecheck memcheck_mask; do
  echo "== $t"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|v4_sanitize" "$OUT/$t.log" | head -3
done
since "rc pytest $rc_test sweep $rc_sweep sanitizers $r1 $r2 $r3 $r4 bench $rc_bench"
echo "== forward TFLOP/s (rc $rc_bench)"
grep -A40 "^dtype" "$OUT/bench.log"
