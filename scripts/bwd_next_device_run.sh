#!/usr/bin/env bash
# One device call for the v5 dK/dV kernel (prepared without a GPU; NOTES_bwd.md "v5"): build, the CUDA
# backward tests under each FLASH_ATTN_EXT_BWD_VARIANT (v5, v5x2, then v4, the rung below), compute-sanitizer
# memcheck + racecheck on the new kernels, and forward + backward timings of v4, v5, v5x2 beside SDPA's
# flash backend (the table, printed last). Logs in OUT_DIR.
#
#   bash scripts/bwd_next_device_run.sh OUT_DIR        BUDGET_S (default 560): the whole run's wall budget;
#                                                      the bench gets what is left (N = 4096 only when short)
#                                                      NCU=1: ncu of the dK/dV kernel per variant (~60 s more)
set -o pipefail
OUT=${1:-${OUT:-/tmp/bwd_next}}
mkdir -p "$OUT"
export TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=${MAX_JOBS:-16} PYTHONUNBUFFERED=1 FLASH_ATTN_EXT_SKIP_NVCC_CHECK=1 PYTHONPATH=$PWD
unset FLASH_ATTN_EXT_BWD_VARIANT
BUDGET_S=${BUDGET_S:-560}
source "$(dirname "$0")/device_clock.sh"

nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader
python3 setup.py build_ext --inplace >"$OUT/build.log" 2>&1 || { tail -60 "$OUT/build.log"; exit 1; }
since "build done"
python3 - <<'PY' 2>&1 | tail -3
import os, torch, flash_attn_ext as f
q = torch.randn(1, 2, 64, 128, device="cuda", dtype=torch.bfloat16)
for v in ("v4", "v5", "v5x2"):
    os.environ["FLASH_ATTN_EXT_BWD_VARIANT"] = v
    print(v, "->", f.explain(q, q, q)["backward_reason"])
PY

# The three variants' tests at once (5 workers each): the float64 CPU references dominate, so this uses
# the host's cores instead of waiting on them three times.
declare -A PIDS
TESTS=(tests/gpu/test_cuda_backward.py tests/test_backward.py)
t_cap=$(cap 150 200)
for V in v5 v5x2 v4; do
  FLASH_ATTN_EXT_BWD_VARIANT=$V timeout "$t_cap" python3 -m pytest -q -n 5 --tb=short -rs -p no:cacheprovider \
    "${TESTS[@]}" -k "cuda or gpu or mma" >"$OUT/tests_$V.log" 2>&1 &
  PIDS[$V]=$!
done
declare -A TEST_RC
for V in v5 v5x2 v4; do
  wait "${PIDS[$V]}"
  TEST_RC[$V]=$?
  echo "tests $V rc=${TEST_RC[$V]}: $(grep -E '[0-9]+ (passed|failed)' "$OUT/tests_$V.log" | tail -1)"
  grep -E "^(FAILED|ERROR)" "$OUT/tests_$V.log" | head -8
  grep -m4 -E "^E .*(error|Error|assert)" "$OUT/tests_$V.log"
done
since "tests done"

export PYTORCH_NO_CUDA_MEMORY_CACHING=1
# The four sanitizer runs at once (small shapes: the GPU is not the limit, the tools' host side is).
declare -A SAN SPID
s_cap=$(cap 100 130)
for V in v5 v5x2; do
  for TOOL in memcheck racecheck; do
    FLASH_ATTN_EXT_BWD_VARIANT=$V timeout "$s_cap" compute-sanitizer --tool $TOOL --print-limit 5 \
      python3 scripts/bwd_sanitize.py >"$OUT/${TOOL}_$V.log" 2>&1 &
    SPID[$V.$TOOL]=$!
  done
done
for V in v5 v5x2; do
  for TOOL in memcheck racecheck; do
    wait "${SPID[$V.$TOOL]}"
    rc=$?
    SAN[$V.$TOOL]="rc=$rc $(grep -hoE '(ERROR|RACECHECK) SUMMARY: [0-9]+ [a-z]+' "$OUT/${TOOL}_$V.log" | tr '\n' ' ')"
    echo "$TOOL $V: ${SAN[$V.$TOOL]}"
    grep -m4 -E "Invalid|Race reported|Program hit" "$OUT/${TOOL}_$V.log"
  done
done
unset PYTORCH_NO_CUDA_MEMORY_CACHING
since "sanitizers done"

if [ -n "${NCU:-}" ]; then
  for V in v4 v5; do
    FLASH_ATTN_EXT_BWD_VARIANT=$V timeout "$(cap 60 100)" ncu --clock-control none -k regex:bwd_dkdv --launch-count 1 \
      --section SpeedOfLight --section WarpStateStats --section Occupancy --section LaunchStats \
      --section ComputeWorkloadAnalysis python3 scripts/bwd_profile.py >"$OUT/ncu_$V.txt" 2>&1
    echo "ncu $V rc=$?"
    grep -E "Duration|Registers Per|Achieved Occupancy|Issue Slots Busy|Executed Ipc A|Local Memory" "$OUT/ncu_$V.txt" | head -8
  done
  since "ncu done"
fi

# The full grid (3 N x 2 E x 2 causal, 5 timings each) should take ~100 s; N = 4096 only when less is left.
quick=""
[ "$(left)" -lt 150 ] && quick="--quick"
timeout "$(cap 300 5)" python3 benchmarks/bwd_bench.py --variants v4,v5,v5x2 $quick --json "$OUT/bench_variants.json" \
  >"$OUT/bench.log" 2>&1
echo "bench rc=$?"
since "all done"
echo "=== summary: tests v5 rc=${TEST_RC[v5]} v5x2 rc=${TEST_RC[v5x2]} v4 rc=${TEST_RC[v4]};" \
  "memcheck v5 ${SAN[v5.memcheck]}| racecheck v5 ${SAN[v5.racecheck]}| memcheck v5x2 ${SAN[v5x2.memcheck]}|" \
  "racecheck v5x2 ${SAN[v5x2.racecheck]}"
tail -16 "$OUT/bench.log"
