#!/usr/bin/env bash
# On the GPU machine: build the extension (sm_90 only, to keep the build short), run
# scripts/check_v3.py, keep logs under $OUT. Extra arguments go to check_v3.py.
set -o pipefail
OUT=${OUT:-/tmp/v3_out}
mkdir -p "$OUT"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} PYTHONUNBUFFERED=1
start=$(date +%s)
python3 setup.py build_ext --inplace >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - start )) s"
PYTHONPATH=$PWD python3 scripts/check_v3.py --json "$OUT/check.json" "$@" 2>&1 | tee "$OUT/check.log"
