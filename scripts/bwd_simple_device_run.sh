#!/usr/bin/env bash
# On the H200: build, the CUDA backward tests (bwd_simple's first, then the rest of the file), the
# bwd_simple bench (E=256 bf16 and E=64 float32 'ieee' vs the dense backward and SDPA efficient),
# compute-sanitizer memcheck + racecheck on scripts/bwd_sanitize.py's bwd_simple list (SIMPLE_ONLY=1),
# then the bench's table (printed last). Logs in OUT_DIR; about 400 s in all.
#   bash scripts/bwd_simple_device_run.sh OUT_DIR
set -o pipefail
OUT=${1:-${OUT:-/tmp/bwd_simple_out}}
mkdir -p "$OUT"
export TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 PYTHONUNBUFFERED=1 FLASH_ATTN_EXT_SKIP_NVCC_CHECK=1 PYTHONPATH=$PWD
start=$(date +%s)
since() { echo "[$(( $(date +%s) - start )) s] $*"; }
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader
python3 setup.py build_ext --inplace >"$OUT/build.log" 2>&1 || { tail -60 "$OUT/build.log"; exit 1; }
since "build done"
# Registers / stack / local memory of the bwd_simple kernels, from the cubin.
so=$(ls flash_attn_ext/_C*.so | head -1)
cuobjdump -res-usage "$so" 2>/dev/null | grep -A1 -E "bwd_simple" | grep -oE "Function [^:]*|REG:[0-9]+|STACK:[0-9]+|SHARED:[0-9]+|LOCAL:[0-9]+" \
  | paste - - - - - >"$OUT/simple_res_usage.txt" 2>/dev/null
sed -E 's/_ZN14flash_attn_ext4cuda10bwd_simple//' "$OUT/simple_res_usage.txt" | head -24

timeout ${TEST1_S:-100} python3 -m pytest -q -n 8 --tb=short -rs -p no:cacheprovider tests/gpu/test_cuda_backward.py \
  -k "simple or ieee or f32_backward_is_selected" >"$OUT/tests_simple.log" 2>&1
echo "bwd_simple tests rc=$?"
grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/tests_simple.log" | head -30
grep -E "^E .*(rror|assert)" "$OUT/tests_simple.log" | head -20
since "bwd_simple tests done"

timeout ${TEST2_S:-90} python3 -m pytest -q -n 8 --tb=short -rs -p no:cacheprovider tests/gpu/test_cuda_backward.py \
  -k "not (simple or ieee or f32_backward_is_selected)" >"$OUT/tests_rest.log" 2>&1
echo "rest of test_cuda_backward.py rc=$?"
grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/tests_rest.log" | head -20
since "tests done"

timeout ${BENCH_S:-70} python3 benchmarks/bwd_simple_bench.py --json "$OUT/bench_simple.json" ${BENCH_ARGS:-} \
  >"$OUT/bench_simple.log" 2>&1
echo "bench rc=$?"
since "bench done"

left=$(( ${BUDGET_S:-405} - ($(date +%s) - start) ))
each=$(( left / 2 > 25 ? left / 2 : 25 ))
export PYTORCH_NO_CUDA_MEMORY_CACHING=1 SIMPLE_ONLY=1
timeout $each compute-sanitizer --tool memcheck --print-limit 5 python3 scripts/bwd_sanitize.py >"$OUT/memcheck.log" 2>&1
echo "memcheck rc=$? (limit $each s)"; grep -E "ERROR SUMMARY|sanitize|Invalid|Error" "$OUT/memcheck.log" | head -8
left=$(( ${BUDGET_S:-405} - ($(date +%s) - start) ))
each=$(( left > 25 ? left : 25 ))
timeout $each compute-sanitizer --tool racecheck --print-limit 5 python3 scripts/bwd_sanitize.py >"$OUT/racecheck.log" 2>&1
echo "racecheck rc=$? (limit $each s)"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize|hazard" "$OUT/racecheck.log" | head -8
unset PYTORCH_NO_CUDA_MEMORY_CACHING SIMPLE_ONLY
since "all done"
tail -14 "$OUT/bench_simple.log"
