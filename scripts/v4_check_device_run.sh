#!/usr/bin/env bash
# On the H200, < 560 s, from the repository root: the checks and timings of a change to v4. Build; then,
# concurrently, the whole pytest suite and two check_v4.py sweeps; then compute-sanitizer (memcheck over
# v4_sanitize.py's default list, once as routed (the persistent kernels at its sizes) and once on the one-item
# grid, over its --mask and --tf32 lists and over the sweep's second head dims on the persistent kernel with
# the causal heads grouped by 3 (or the switches in V4_SAN_SWEEP2_ENV); synccheck and racecheck (persistent)
# over two head dims each; the persistent kernel on 7 CTAs);
# then, alone on the GPU, forward timings beside SDPA flash and cuDNN (check_v4.py --no-check, the
# variants in V4_BENCH, args passed on, e.g. --ns 1024,4096 --head-dims 64,128 --dtypes bfloat16), and
# a second table when V4_BENCH2 names its variants (args in V4_BENCH2_ARGS); printed last. Logs under OUT.
#
#   V4_SWEEP_E=64,128,256        head dims of the first sweep (variants V4_SWEEP_VARIANTS,
#                                default v4,v4_persist7,v4_xitem7)
#   V4_SWEEP2_E=40,96,160        head dims of the second sweep (variants V4_SWEEP2_VARIANTS, same default)
#   bash scripts/v4_check_device_run.sh OUT [check_v4.py timing args...]
set -o pipefail
OUT=${1:-${OUT:-/tmp/v4_check_out}}
shift || true
source scripts/device_env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader
begin_run 560 "$OUT" || exit 1

SWEEP_E=${V4_SWEEP_E:-64,128,256}
SWEEP2_E=${V4_SWEEP2_E:-40,96,160}
timeout $(cap 220 250) python3 -m pytest -q -n 12 tests -p no:cacheprovider >"$OUT/pytest.log" 2>&1 &
p_test=$!
V4_VARIANTS=${V4_SWEEP_VARIANTS:-v4,v4_persist7,v4_xitem7} timeout $(cap 230 250) python3 scripts/check_v4.py \
  --no-bench --head-dims "$SWEEP_E" >"$OUT/sweep.log" 2>&1 &
p_sweep=$!
V4_VARIANTS=${V4_SWEEP2_VARIANTS:-v4,v4_persist7,v4_xitem7} timeout $(cap 230 250) python3 scripts/check_v4.py \
  --no-bench --no-mask --head-dims "$SWEEP2_E" >"$OUT/sweep2.log" 2>&1
rc_sweep2=$?
wait $p_test; rc_test=$?
wait $p_sweep; rc_sweep=$?
since "pytest + sweeps done"

san() {  # TOOL LOG SAN_E [script args]: one sanitizer run over v4_sanitize.py, persistent kernel on 7 CTAs
  local tool=$1 log=$2 e=$3
  shift 3
  (export FLASH_ATTN_EXT_V4_CTAS=7 V4_SAN_E=$e V4_SAN_MASK_E=${SWEEP2_E%%,*},64,128
   sanitize "$tool" "$OUT/$log.log" "$(cap 130 130)" python3 scripts/v4_sanitize.py "$@")
}
san memcheck memcheck "$SWEEP_E" & p1=$!
san memcheck memcheck_mask "" --mask & p2=$!
san memcheck memcheck_tf32 "" --tf32 & p3=$!
(export ${V4_SAN_SWEEP2_ENV:-FLASH_ATTN_EXT_HEAD_GROUP=3 FLASH_ATTN_EXT_V4_PERSISTENT=1}; san memcheck memcheck_sweep2 "$SWEEP2_E") & p4=$!
san synccheck synccheck "${SWEEP_E%%,*},${SWEEP2_E%%,*}" & p5=$!
(export FLASH_ATTN_EXT_V4_PERSISTENT=1; san racecheck racecheck "${SWEEP2_E##*,},128") & p6=$!
(export FLASH_ATTN_EXT_V4_PERSISTENT=0; san memcheck memcheck_onecta "$SWEEP_E") & p7=$!
wait $p1; r1=$?; wait $p2; r2=$?; wait $p3; r3=$?; wait $p4; r4=$?; wait $p5; r5=$?; wait $p6; r6=$?; wait $p7; r7=$?
since "sanitizers done"

V4_BENCH=${V4_BENCH:-v4} timeout $(cap 200 70) python3 scripts/check_v4.py --no-check --no-mask --json "$OUT/bench.json" "$@" \
  >"$OUT/bench.log" 2>&1
rc_bench=$?
rc_bench2=0
if [ -n "${V4_BENCH2:-}" ]; then
  # shellcheck disable=SC2086
  V4_BENCH=$V4_BENCH2 timeout $(cap 200 5) python3 scripts/check_v4.py --no-check --no-mask --json "$OUT/bench2.json" \
    ${V4_BENCH2_ARGS:-} >"$OUT/bench2.log" 2>&1
  rc_bench2=$?
fi

echo "== pytest, whole suite (rc $rc_test)"; grep -E "passed|failed|error" "$OUT/pytest.log" | tail -2
grep -E "^FAILED|^ERROR" "$OUT/pytest.log" | head -12
echo "== check_v4 sweep $SWEEP_E (rc $rc_sweep)"; grep -vE "^explain" "$OUT/sweep.log" | tail -8
echo "== check_v4 sweep $SWEEP2_E (rc $rc_sweep2)"; grep -vE "^explain" "$OUT/sweep2.log" | tail -8
for t in memcheck memcheck_onecta memcheck_mask memcheck_tf32 memcheck_sweep2 synccheck racecheck; do
  echo "== $t"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|v4_sanitize|Error" "$OUT/$t.log" | head -3
done
since "rc pytest $rc_test sweeps $rc_sweep $rc_sweep2 sanitizers $r1 $r2 $r3 $r4 $r5 $r6 $r7 bench $rc_bench $rc_bench2"
echo "== forward TFLOP/s (rc $rc_bench)"
grep -A40 "^dtype" "$OUT/bench.log"
[ -n "${V4_BENCH2:-}" ] && { echo "== forward TFLOP/s, second table (rc $rc_bench2)"; grep -A60 "^dtype" "$OUT/bench2.log"; }
exit 0
