#!/usr/bin/env bash
# On the H200: (1) build and run the standalone TMA + wgmma GEMM unit test, (2) build the
# extension (sm_90 + sm_90a), (3) scripts/check_v4.py (correctness, then timings), logs in $OUT.
set -o pipefail
# Usage: bash scripts/v4_device_run.sh [OUT_DIR] [check_v4.py args...]
OUT=${1:-${OUT:-/tmp/v4_out}}
[ $# -gt 0 ] && shift
mkdir -p "$OUT"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} PYTHONUNBUFFERED=1
start=$(date +%s)
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader
nvcc -std=c++17 -O2 -gencode=arch=compute_90a,code=sm_90a -I csrc scripts/ptx_tests/wgmma_tma_gemm.cu \
  -o /tmp/wgmma_test >"$OUT/unit.log" 2>&1 && (cd /tmp && ./wgmma_test) >>"$OUT/unit.log" 2>&1
echo "unit test rc=$?"; cat "$OUT/unit.log" | tail -8
(compute-sanitizer --tool memcheck /tmp/wgmma_test 2>&1 | tail -3) >"$OUT/sanitizer_unit.log" 2>&1 &
python3 setup.py build_ext --inplace >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build done at $(( $(date +%s) - start )) s"
wait
cat "$OUT/sanitizer_unit.log"
left=$(( ${V4_BUDGET_S:-400} - ($(date +%s) - start) ))
PYTHONPATH=$PWD timeout $(( left > 30 ? left - 10 : 20 )) python3 scripts/check_v4.py --json "$OUT/check.json" "$@" 2>&1 \
  | tee "$OUT/check.log"
echo "total $(( $(date +%s) - start )) s"
