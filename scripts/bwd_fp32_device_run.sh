#!/usr/bin/env bash
# On the H200: build, the CUDA backward tests (float32 included), the float32 forward+backward bench,
# compute-sanitizer memcheck + racecheck on the float32 case list of scripts/bwd_sanitize.py, then the bench's
# table (printed last).
# Logs in OUT_DIR.   bash scripts/bwd_fp32_device_run.sh OUT_DIR
set -o pipefail
OUT=${1:-${OUT:-/tmp/bwd32_out}}
mkdir -p "$OUT"
export TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 PYTHONUNBUFFERED=1 FLASH_ATTN_EXT_SKIP_NVCC_CHECK=1 PYTHONPATH=$PWD
start=$(date +%s)
since() { echo "[$(( $(date +%s) - start )) s] $*"; }
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader
python3 setup.py build_ext --inplace >"$OUT/build.log" 2>&1 || { tail -60 "$OUT/build.log"; exit 1; }
since "build done"
# ptxas figures of the float32 kernels, from the build log when it has them (setup.py passes no -v): the
# cubin's own resource usage instead.
so=$(ls flash_attn_ext/_C*.so | head -1)
cuobjdump -res-usage "$so" 2>/dev/null | grep -A1 -E "bwd_(dkdv|dq)_f32" | grep -oE "Function [^:]*|REG:[0-9]+|STACK:[0-9]+|SHARED:[0-9]+|LOCAL:[0-9]+" \
  | paste - - - - - >"$OUT/f32_res_usage.txt" 2>/dev/null
head -20 "$OUT/f32_res_usage.txt" | sed -E 's/_ZN14flash_attn_ext4cuda3bwd//'

timeout 60 python3 scripts/bwd_fp32_errors.py >"$OUT/errors.log" 2>&1
echo "errors rc=$?"; cat "$OUT/errors.log" | tail -12
since "errors done"

timeout ${TEST_S:-170} python3 -m pytest -q -n 8 --tb=short -rs -p no:cacheprovider tests/gpu/test_cuda_backward.py \
  tests/test_backward.py tests/test_precision.py -k "cuda or gpu or mma or f32" >"$OUT/tests.log" 2>&1
echo "tests rc=$?"
grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/tests.log" | head -30
grep -E "^E .*(error|Error)" "$OUT/tests.log" | head -20
since "tests done"

# The bench before the sanitizers (its table is printed last either way), so a slow sanitizer cannot cost it.
timeout ${BENCH_S:-120} python3 benchmarks/bwd_f32_bench.py --json "$OUT/bench_f32.json" ${BENCH_ARGS:-} \
  >"$OUT/bench_f32.log" 2>&1
echo "bench rc=$?"
since "bench done"

left=$(( ${BUDGET_S:-490} - ($(date +%s) - start) ))
each=$(( left / 2 > 30 ? left / 2 : 30 ))
export PYTORCH_NO_CUDA_MEMORY_CACHING=1 FLOAT32_ONLY=1
timeout $each compute-sanitizer --tool memcheck --print-limit 5 python3 scripts/bwd_sanitize.py >"$OUT/memcheck.log" 2>&1
echo "memcheck rc=$? (limit $each s)"; grep -E "ERROR SUMMARY|sanitize|Invalid|Error" "$OUT/memcheck.log" | head -8
left=$(( ${BUDGET_S:-490} - ($(date +%s) - start) ))
each=$(( left > 30 ? left : 30 ))
timeout $each compute-sanitizer --tool racecheck --print-limit 5 python3 scripts/bwd_sanitize.py >"$OUT/racecheck.log" 2>&1
echo "racecheck rc=$? (limit $each s)"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize|hazard" "$OUT/racecheck.log" | head -8
unset PYTORCH_NO_CUDA_MEMORY_CACHING FLOAT32_ONLY
since "all done"
echo "--- float32 backward error (max|err|/max|ref| vs float64):"; grep -E "^causal" "$OUT/errors.log"
tail -30 "$OUT/bench_f32.log"
