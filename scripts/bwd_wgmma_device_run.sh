#!/usr/bin/env bash
# One device call for the Hopper backward (kernels/bwd_wgmma, prepared without a GPU; NOTES_bwd.md
# "wgmma backward (prepared)"): build, a smoke comparison of wgmma against v5, the CUDA backward tests
# under FLASH_ATTN_EXT_BWD_VARIANT=wgmma, compute-sanitizer memcheck + racecheck with the variant, and
# forward + backward timings of v5 (the default) and wgmma beside SDPA's flash backend (the table,
# printed last). First a standalone test of the PTX forms only this kernel uses
# (scripts/ptx_tests/wgmma_trans_a.cu). Logs in OUT_DIR.
#
#   bash scripts/bwd_wgmma_device_run.sh OUT_DIR     BUDGET_S (default 530): the whole run's wall budget
set -o pipefail
OUT=${1:-${OUT:-/tmp/bwd_wgmma}}
mkdir -p "$OUT"
export TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=${MAX_JOBS:-16} PYTHONUNBUFFERED=1 FLASH_ATTN_EXT_SKIP_NVCC_CHECK=1 PYTHONPATH=$PWD
unset FLASH_ATTN_EXT_BWD_VARIANT
BUDGET_S=${BUDGET_S:-530}
source "$(dirname "$0")/device_clock.sh"

nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader
python3 setup.py build_ext --inplace >"$OUT/build.log" 2>&1 || { tail -60 "$OUT/build.log"; exit 1; }
since "build done"

# The two wgmma forms only this kernel uses (A transposed; N = 32 at a 64-byte start), alone.
nvcc -std=c++17 -O2 -gencode=arch=compute_90a,code=sm_90a -I csrc scripts/ptx_tests/wgmma_trans_a.cu \
  -o "$OUT/wgmma_trans_a" >"$OUT/ptx_test.log" 2>&1 && timeout 30 "$OUT/wgmma_trans_a" >>"$OUT/ptx_test.log" 2>&1
PTX_RC=$?
cat "$OUT/ptx_test.log" | tail -4
since "ptx test rc=$PTX_RC"

# A hang (barrier phase bug) shows here first, within 60 s, instead of eating the tests' budget.
timeout 60 python3 scripts/bwd_wgmma_smoke.py >"$OUT/smoke.log" 2>&1
SMOKE_RC=$?
cat "$OUT/smoke.log" | tail -20
since "smoke rc=$SMOKE_RC"
if [ "$SMOKE_RC" -eq 124 ]; then
  echo "=== summary: smoke TIMED OUT (likely a hang in bwd_wgmma); nothing else run"
  exit 1
fi

TESTS=(tests/gpu/test_cuda_backward.py tests/test_backward.py)
FLASH_ATTN_EXT_BWD_VARIANT=wgmma timeout "$(cap 150 230)" python3 -m pytest -q -n 8 --tb=short -rs \
  -p no:cacheprovider "${TESTS[@]}" -k "cuda or gpu or mma or wgmma" >"$OUT/tests_wgmma.log" 2>&1
TEST_RC=$?
echo "tests wgmma rc=$TEST_RC: $(grep -E '[0-9]+ (passed|failed)' "$OUT/tests_wgmma.log" | tail -1)"
grep -E "^(FAILED|ERROR)" "$OUT/tests_wgmma.log" | head -12
grep -m6 -E "^E .*(error|Error|assert)" "$OUT/tests_wgmma.log"
since "tests done"

export PYTORCH_NO_CUDA_MEMORY_CACHING=1
declare -A SAN SPID
s_cap=$(cap 100 110)
for TOOL in memcheck racecheck; do
  FLASH_ATTN_EXT_BWD_VARIANT=wgmma timeout "$s_cap" compute-sanitizer --tool $TOOL --print-limit 5 \
    python3 scripts/bwd_sanitize.py >"$OUT/${TOOL}_wgmma.log" 2>&1 &
  SPID[$TOOL]=$!
done
for TOOL in memcheck racecheck; do
  wait "${SPID[$TOOL]}"
  rc=$?
  SAN[$TOOL]="rc=$rc $(grep -hoE '(ERROR|RACECHECK) SUMMARY: [0-9]+ [a-z]+' "$OUT/${TOOL}_wgmma.log" | tr '\n' ' ')"
  echo "$TOOL wgmma: ${SAN[$TOOL]}"
  grep -m4 -E "Invalid|Race reported|Program hit|hazard" "$OUT/${TOOL}_wgmma.log"
done
unset PYTORCH_NO_CUDA_MEMORY_CACHING
since "sanitizers done"

# 3 N x 2 E x 2 causal, v5 and wgmma and SDPA flash: ~80 s; N = 4096 only when less than 120 s is left.
quick=""
[ "$(left)" -lt 120 ] && quick="--quick"
timeout "$(cap 300 5)" python3 benchmarks/bwd_bench.py --variants v5,wgmma $quick --json "$OUT/bench_variants.json" \
  >"$OUT/bench.log" 2>&1
echo "bench rc=$?"
since "all done"
echo "=== summary: ptx test rc=$PTX_RC; smoke rc=$SMOKE_RC; tests wgmma rc=$TEST_RC; memcheck ${SAN[memcheck]}| racecheck ${SAN[racecheck]}"
tail -16 "$OUT/bench.log"
