#!/usr/bin/env bash
# On the H200: (1) build the extension (TORCH_CUDA_ARCH_LIST=9.0), (2) scripts/check_v4.py
# (correctness of every variant in V4_VARIANTS, then timings of those in V4_BENCH beside SDPA
# flash and cuDNN), (3) compute-sanitizer on scripts/v4_sanitize.py (the V4_SAN list). Logs in
# $OUT; the check's table is printed last. Defaults: the default v4 (persistent at S <= 1024) against
# the one-CTA-per-item kernel (FLASH_ATTN_EXT_V4_PERSISTENT=0), N = 512 .. 16384, bf16 and fp16,
# sanitizers on the persistent kernel capped to 7 CTAs (many items per CTA); about 8 minutes.
# Usage: bash scripts/v4_device_run.sh [OUT_DIR] [check_v4.py args...]
#   V4_UNIT=1 also builds and runs the standalone TMA + wgmma GEMM test first.
#   V4_SAN_E=256 limits the sanitizer cases to those head dims (scripts/v4_sanitize.py).
# E = 256 alone (NOTES_v4.md step 5; the three loops checked and timed, sanitizers on E = 256; ~6 min):
#   V4_VARIANTS=v4,v4_pp,v4_simple V4_BENCH=v4,v4_pp,v4_simple V4_SAN_E=256 \
#   V4_SAN="memcheck:v4 synccheck:v4 racecheck:v4 synccheck:v4_pp" V4_SAN_S=180 \
#   bash scripts/v4_device_run.sh OUT --head-dims 256 --ns 1024,4096,16384
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
# V4_SAN: space-separated TOOL:VARIANT runs of compute-sanitizer, V4_SAN_S seconds in all.
san=(${V4_SAN:-memcheck:v4_persist7 synccheck:v4_persist7 racecheck:v4_persist7 memcheck:v4})
san_s=${V4_SAN_S:-160}
left=$(( ${V4_BUDGET_S:-520} - ($(date +%s) - start) - san_s ))
# The bool-mask sweep and timing rows have their own script (scripts/v4_mask_device_run.sh); V4_MASK=1 adds
# them here too.
mask_flag=(--no-mask)
[ "${V4_MASK:-0}" = 1 ] && mask_flag=()
PYTHONPATH=$PWD timeout $(( left > 30 ? left : 30 )) python3 scripts/check_v4.py --json "$OUT/check.json" \
  "${mask_flag[@]}" "$@" \
  >"$OUT/check.log" 2>&1
check_rc=$?
echo "check rc=$check_rc at $(( $(date +%s) - start )) s"
variant_env() {  # the environment check_v4.py's VARIANTS gives each name
  case $1 in
    v4_simple) echo FLASH_ATTN_EXT_V4_SIMPLE=1 ;;
    v4_onecta) echo FLASH_ATTN_EXT_V4_PERSISTENT=0 ;;
    v4_persist) echo FLASH_ATTN_EXT_V4_PERSISTENT=1 ;;
    v4_persist7) echo FLASH_ATTN_EXT_V4_PERSISTENT=1 FLASH_ATTN_EXT_V4_CTAS=7 ;;
    v4_pp) echo FLASH_ATTN_EXT_V4_PINGPONG=1 ;;
    *) ;;
  esac
}
for job in "${san[@]}"; do
  tool=${job%%:*} var=${job#*:}
  env $(variant_env "$var") PYTHONPATH=$PWD \
    timeout $(( san_s / ${#san[@]} )) compute-sanitizer --tool $tool python3 scripts/v4_sanitize.py \
    >"$OUT/sanitizer_${tool}_${var}.log" 2>&1
  echo "sanitizer $tool $var rc=$?: $(tail -2 "$OUT/sanitizer_${tool}_${var}.log" | tr '\n' ' ')"
done
# A check cut off by its timeout never prints the table: show the rows it had timed instead.
[ $check_rc = 124 ] && grep '^{' "$OUT/check.log"
grep -v '^{' "$OUT/check.log" | tail -70
echo "total $(( $(date +%s) - start )) s"
