#!/usr/bin/env bash
# On the H200, < 560 s: NOTES_v4.md step 10's A/B. For each share of exp2s on the FMA units at E = 64
# (config.h kExpFmaEvery: every k-th 8-key block of an unmasked tile; 0 = all on MUFU), rebuild, check
# the E = 64 sweep of check_v4.py for the first build (the source as committed), and time E = 64 beside
# SDPA flash and cuDNN (check_v4.py --no-check; args passed on). config.h is restored at the end.
#
#   bash scripts/v4_expfma_ab.sh OUT "4 2 0" [check_v4.py timing args...]
set -o pipefail
OUT=${1:-/tmp/v4_expfma_out}
SHARES=${2:-"4 2 0"}
shift 2 || true
mkdir -p "$OUT"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} FLASH_ATTN_EXT_SKIP_NVCC_CHECK=1
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 PYTHONPATH=$PWD
BUDGET_S=560
source scripts/device_clock.sh
CFG=csrc/cuda/kernels/v4_wgmma/config.h
cp "$CFG" "$OUT/config.h.orig"
first=1
for k in $SHARES; do
  sed -i "s/kExpFmaEvery = E_ == 64 ? [0-9]* : 0;/kExpFmaEvery = E_ == 64 ? $k : 0;/" "$CFG"
  grep -q "kExpFmaEvery = E_ == 64 ? $k : 0;" "$CFG" || { echo "config.h: kExpFmaEvery line not found"; break; }
  python3 setup.py build_ext --inplace >"$OUT/build_$k.log" 2>&1 || { tail -30 "$OUT/build_$k.log"; break; }
  since "build k=$k"
  if [ $first = 1 ]; then
    V4_VARIANTS=v4,v4_persist7 timeout $(cap 150 200) python3 scripts/check_v4.py --no-bench --head-dims 64 \
      >"$OUT/sweep_$k.log" 2>&1
    echo "sweep k=$k rc $?: $(grep -E "^correctness|failures" "$OUT/sweep_$k.log" | tr '\n' ' ')"
    timeout $(cap 90 200) python3 -m pytest -q -n 12 tests/gpu/test_v4_scales.py tests/test_hidden_keys.py \
      tests/test_masks.py -p no:cacheprovider >"$OUT/pytest_$k.log" 2>&1
    echo "pytest k=$k rc $?: $(tail -1 "$OUT/pytest_$k.log")"
    first=0
  fi
  V4_BENCH=v4 timeout $(cap 120 60) python3 scripts/check_v4.py --no-check --no-mask --head-dims 64 \
    --json "$OUT/bench_$k.json" "$@" >"$OUT/bench_$k.log" 2>&1
  echo "== k=$k"; grep -A20 "^dtype" "$OUT/bench_$k.log" | grep -v failures
done
cp "$OUT/config.h.orig" "$CFG"
since "done"
