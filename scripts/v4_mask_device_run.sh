#!/usr/bin/env bash
# On the H200, the bool-mask path of v4_wgmma (benchmarks/NOTES_v4.md, step 6), in < 540 s:
# (1) build (TORCH_CUDA_ARCH_LIST=9.0), (2) scripts/check_v4.py --mask-only: the masked correctness
# sweep against float64 (broadcast forms, tails, causal both ways, GQA, fully masked rows/blocks,
# NaN at hidden keys, repeat-run identity, explain) and the mask timing rows (bf16 E=128 N=4096:
# v4 masked / v4 unmasked / v3 masked / SDPA efficient / cuDNN), (3) the mask tests of the pytest
# suite on CUDA, every kernel, (4) compute-sanitizer memcheck (and synccheck) on
# scripts/v4_sanitize.py --mask. Logs in OUT; the short table is printed last.
# Usage: bash scripts/v4_mask_device_run.sh [OUT_DIR]
set -o pipefail
OUT=${1:-${OUT:-/tmp/v4_mask_out}}
mkdir -p "$OUT"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} PYTHONUNBUFFERED=1
export FLASH_ATTN_EXT_SKIP_NVCC_CHECK=1 PYTHONPATH=$PWD
start=$(date +%s)
el() { echo $(( $(date +%s) - start )); }
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader
python3 setup.py build_ext --inplace >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build done at $(el) s"
V4_VARIANTS=v4 timeout 200 python3 scripts/check_v4.py --mask-only --json "$OUT/check_mask.json" \
  >"$OUT/check_mask.log" 2>&1
echo "check_v4 --mask-only rc=$? at $(el) s"
grep -E '^(FAIL|correctness|explain)' "$OUT/check_mask.log" | head -30
xdist=()
python3 -c "import xdist" 2>/dev/null && xdist=(-n 8)
timeout 150 python3 -m pytest -q -p no:cacheprovider "${xdist[@]}" tests/test_masks.py -k "cuda" \
  >"$OUT/pytest_mask.log" 2>&1
echo "pytest tests/test_masks.py -k cuda rc=$? at $(el) s: $(tail -1 "$OUT/pytest_mask.log")"
grep -E '^(FAILED|ERROR)' "$OUT/pytest_mask.log" | head -20
for tool in memcheck synccheck; do
  left=$(( ${V4_BUDGET_S:-530} - $(el) ))
  [ "$left" -lt 40 ] && { echo "sanitizer $tool: skipped (time)"; continue; }
  t=$(( left < 130 ? left - 10 : 120 ))
  timeout $t compute-sanitizer --tool $tool python3 scripts/v4_sanitize.py --mask >"$OUT/sanitizer_${tool}_mask.log" 2>&1
  echo "sanitizer $tool --mask rc=$? at $(el) s: $(tail -2 "$OUT/sanitizer_${tool}_mask.log" | tr '\n' ' ')"
done
# The short table: the mask timing rows of check_v4.py (or the raw rows if it was cut off).
grep -q '^mask (bf16' "$OUT/check_mask.log" || grep '^{' "$OUT/check_mask.log"
sed -n '/^mask (bf16/,$p' "$OUT/check_mask.log"
echo "total $(el) s"
