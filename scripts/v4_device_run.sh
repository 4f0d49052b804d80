#!/usr/bin/env bash
# On the H200: (1) build the extension (TORCH_CUDA_ARCH_LIST=9.0), (2) scripts/check_v4.py
# (correctness, then timings of every variant in V4_VARIANTS beside SDPA flash and cuDNN), (3)
# compute-sanitizer memcheck and synccheck on scripts/v4_sanitize.py (the V4_SAN list). Logs in
# $OUT; the check's table is printed last.
# Usage: bash scripts/v4_device_run.sh [OUT_DIR] [check_v4.py args...]
#   V4_UNIT=1 also builds and runs the standalone TMA + wgmma GEMM test first.
set -o pipefail
OUT=${1:-${OUT:-/tmp/v4_out}}
[ $# -gt 0 ] && shift
mkdir -p "$OUT"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} PYTHONUNBUFFERED=1
start=$(date +%s)
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader
if [ "${V4_UNIT:-0}" = 1 ]; then
  nvcc -std=c++17 -O2 -gencode=arch=compute_90a,code=sm_90a -I csrc scripts/ptx_tests/wgmma_tma_gemm.cu \
    -o /tmp/wgmma_test >"$OUT/unit.log" 2>&1 && (cd /tmp && ./wgmma_test) >>"$OUT/unit.log" 2>&1
  echo "unit test rc=$?"; tail -8 "$OUT/unit.log"
fi
python3 setup.py build_ext --inplace >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build done at $(( $(date +%s) - start )) s"
left=$(( ${V4_BUDGET_S:-330} - ($(date +%s) - start) - ${V4_SAN_S:-70} ))
PYTHONPATH=$PWD timeout $(( left > 30 ? left : 30 )) python3 scripts/check_v4.py --json "$OUT/check.json" "$@" \
  >"$OUT/check.log" 2>&1
echo "check rc=$? at $(( $(date +%s) - start )) s"
# V4_SAN: space-separated TOOL:VARIANT runs of compute-sanitizer (VARIANT v4 or v4_simple),
# V4_SAN_S seconds in all.
san=(${V4_SAN:-memcheck:v4 synccheck:v4})
for job in "${san[@]}"; do
  tool=${job%%:*} var=${job#*:}
  simple=0; [ "$var" = v4_simple ] && simple=1
  FLASH_ATTN_EXT_V4_SIMPLE=$simple PYTHONPATH=$PWD \
    timeout $(( ${V4_SAN_S:-70} / ${#san[@]} )) compute-sanitizer --tool $tool python3 scripts/v4_sanitize.py \
    >"$OUT/sanitizer_${tool}_${var}.log" 2>&1
  echo "sanitizer $tool $var rc=$?: $(tail -2 "$OUT/sanitizer_${tool}_${var}.log" | tr '\n' ' ')"
done
grep -v '^{' "$OUT/check.log" | tail -60
echo "total $(( $(date +%s) - start )) s"
