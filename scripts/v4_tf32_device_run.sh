#!/usr/bin/env bash
# On the GPU machine (H200), < 480 s, from the repository root: build and the TF32 wgmma unit test
# (scripts/ptx_tests/wgmma_tf32.cu); then, concurrently, the whole
# pytest suite (v4_wgmma's float32 tests included) and compute-sanitizer memcheck over small
# float32 v4 calls (tails, causal both ways, GQA, E = 64 and 128); then racecheck and synccheck over the
# same calls; then, alone on the GPU, the float32 forward table (benchmarks/f32_bench.py), printed last.
# Logs under OUT.
#
#   bash scripts/v4_tf32_device_run.sh OUT [f32_bench.py args...]
set -o pipefail
OUT=${1:-${OUT:-/tmp/v4_tf32_out}}
shift || true
source scripts/device_env.sh
begin_run 470 "$OUT" || exit 1

nvcc -std=c++17 -O2 -gencode=arch=compute_90a,code=sm_90a -I csrc scripts/ptx_tests/wgmma_tf32.cu \
  -o "$OUT/wgmma_tf32" >"$OUT/ptx_test.log" 2>&1 && timeout 60 "$OUT/wgmma_tf32" >>"$OUT/ptx_test.log" 2>&1
rc_ptx=$?
timeout 200 python3 -m pytest -q -n 16 tests -p no:cacheprovider \
  >"$OUT/pytest.log" 2>&1 &
p_test=$!
sanitize memcheck "$OUT/memcheck.log" 200 python3 scripts/v4_sanitize.py --tf32 &
p_mem=$!
wait $p_test; rc_test=$?
wait $p_mem; rc_mem=$?
since "pytest + memcheck done"
sanitize racecheck "$OUT/racecheck.log" 150 python3 scripts/v4_sanitize.py --tf32 &
p_race=$!
sanitize synccheck "$OUT/synccheck.log" 150 python3 scripts/v4_sanitize.py --tf32 &
p_sync=$!
wait $p_race; rc_race=$?
wait $p_sync; rc_sync=$?
since "racecheck + synccheck done"

timeout $(cap 400 5) python3 benchmarks/f32_bench.py --json "$OUT/f32_bench.json" "$@" >"$OUT/bench.log" 2>&1
rc_bench=$?
echo "== TF32 wgmma unit test (rc $rc_ptx)"; tail -3 "$OUT/ptx_test.log"
echo "== pytest, whole suite (rc $rc_test)"; grep -E "passed|failed|error" "$OUT/pytest.log" | tail -3
grep -E "^FAILED|^ERROR" "$OUT/pytest.log" | head -15
for t in memcheck racecheck synccheck; do
  echo "== $t"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|v4_sanitize|Error" "$OUT/$t.log" | head -4
done
since "rc pytest $rc_test memcheck $rc_mem racecheck $rc_race synccheck $rc_sync bench $rc_bench"
echo "== float32 forward (rc $rc_bench)"
tail -20 "$OUT/bench.log"
