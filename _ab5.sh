#!/usr/bin/env bash
# scratch: step 22 with the run-time switch: correctness, sanitizers, v4 vs v4_maxall at E = 128
OUT=$1
source scripts/device_env.sh
begin_run 560 "$OUT" || exit 1
XD=$(python3 -c "import xdist" 2>/dev/null && echo "-n 8")
timeout $(cap 120 380) python3 -m pytest -q $XD -p no:cacheprovider tests/gpu/test_v4_rising_scores.py tests/gpu/test_v4_scales.py \
  tests/gpu/test_v4_narrow_tail.py tests/gpu/test_causal_work_order.py tests/gpu/test_v4_padded_heads.py > "$OUT/pytest.log" 2>&1
echo "pytest rc $?"; tail -2 "$OUT/pytest.log"; since "pytest"
V4_VARIANTS=v4,v4_onecta,v4_persist7,v4_xitem7,v4_maxall timeout $(cap 120 300) python3 scripts/check_v4.py --no-bench \
  > "$OUT/check.log" 2>&1; echo "check rc $?"
grep -E "^correctness|failures" "$OUT/check.log" | head -12; since "check"
for tool in memcheck racecheck synccheck; do
  sanitize $tool "$OUT/san_$tool.log" $(cap 60 250) python3 scripts/v4_sanitize.py
  echo "$tool rc $? $(grep -c 'ERROR SUMMARY: 0\|RACECHECK SUMMARY: 0' "$OUT/san_$tool.log")"
done
FLASH_ATTN_EXT_V4_XITEM=1 FLASH_ATTN_EXT_V4_PERSISTENT=1 FLASH_ATTN_EXT_V4_CTAS=7 \
  sanitize memcheck "$OUT/san_xitem.log" $(cap 60 220) python3 scripts/v4_sanitize.py
echo "memcheck xitem7 rc $? $(grep -c 'ERROR SUMMARY: 0' "$OUT/san_xitem.log")"
since "sanitizers"
for rep in 1 2; do
  V4_BENCH=v4,v4_maxall timeout $(cap 90 10) python3 scripts/check_v4.py --no-check --no-mask --head-dims 128 \
    --ns 512,1024,2048,4096,8192,16384 --json "$OUT/bench$rep.json" > "$OUT/bench$rep.log" 2>&1
  echo "bench $rep rc $?"; since "bench $rep"
done
tail -26 "$OUT/bench1.log" | head -25; tail -26 "$OUT/bench2.log" | head -25
