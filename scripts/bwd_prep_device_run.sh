#!/usr/bin/env bash
# One device call for the backward's pre-pass kernel (kernels/bwd_prep.cu, NOTES_bwd.md "The pre-pass as a kernel"): build,
# the whole test suite on CUDA, compute-sanitizer memcheck over the backward's sanitize cases, kernel-by-
# kernel times of one forward + backward (ours, SDPA flash, the old ATen pre-pass), then forward +
# backward over DESIGN.md §5's whole grid beside SDPA flash and cuDNN (the table, printed last).
#
#   bash scripts/bwd_prep_device_run.sh OUT_DIR     BUDGET_S (default 540): the whole run's wall budget
set -o pipefail
OUT=${1:-${OUT:-/tmp/bwd_prep}}
mkdir -p "$OUT"
export TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=${MAX_JOBS:-16} PYTHONUNBUFFERED=1 FLASH_ATTN_EXT_SKIP_NVCC_CHECK=1 PYTHONPATH=$PWD
BUDGET_S=${BUDGET_S:-540}
source "$(dirname "$0")/device_clock.sh"

nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader
python3 setup.py build_ext --inplace >"$OUT/build.log" 2>&1 || { tail -60 "$OUT/build.log"; exit 1; }
since "build done"

OMP_NUM_THREADS=1 timeout "$(cap 170 200)" python3 -m pytest -q -n 16 --tb=short -p no:cacheprovider tests \
  >"$OUT/tests.log" 2>&1
TEST_RC=$?
TESTS="rc=$TEST_RC $(grep -E '[0-9]+ (passed|failed)' "$OUT/tests.log" | tail -1)"
echo "tests: $TESTS"
grep -E "^(FAILED|ERROR)" "$OUT/tests.log" | head -12
since "tests done"

PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout "$(cap 90 110)" compute-sanitizer --tool memcheck --print-limit 5 \
  python3 scripts/bwd_sanitize.py >"$OUT/memcheck.log" 2>&1
MEM="rc=$? $(grep -hoE 'ERROR SUMMARY: [0-9]+ [a-z]+' "$OUT/memcheck.log" | tr '\n' ' ')"
echo "memcheck: $MEM"
since "memcheck done"

timeout "$(cap 60 80)" python3 scripts/bwd_kernel_times.py >"$OUT/kernel_times.log" 2>&1
echo "kernel times rc=$?"
since "kernel times done"

timeout "$(cap 300 5)" python3 benchmarks/bwd_bench.py --ns 512,1024,2048,4096,8192,16384 --json "$OUT/bench.json" \
  >"$OUT/bench.log" 2>&1
echo "bench rc=$?"
since "all done"
grep -E "^==|total|bwd_prep|dot_do|sum|zero|copy|Fill" "$OUT/kernel_times.log" | head -40
echo "=== summary: tests $TESTS; memcheck $MEM"
tail -28 "$OUT/bench.log"
