#!/usr/bin/env bash
# On the GPU machine: time the v3 tile table as committed, then with 16-bit and float32
# kBlockM lowered to 64 (two CTAs per SM instead of one), each after a rebuild.
set -o pipefail
OUT=${OUT:-/tmp/v3_out}
mkdir -p "$OUT"
export TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
run() {
  local tag=$1; shift
  python3 setup.py build_ext --inplace >"$OUT/build_$tag.log" 2>&1 || { tail -30 "$OUT/build_$tag.log"; exit 1; }
  python3 scripts/check_v3.py --quick "$@" --json "$OUT/$tag.json" 2>&1 | grep -v Warning | grep -v "return F.scaled" \
    | tee "$OUT/$tag.log" | grep -vE '^\{' | tail -28
}
run base
sed -i 's/static constexpr int kBlockM = 128;/static constexpr int kBlockM = 64;/' csrc/cuda/kernels/v3_mma/tile_sizes.h
sed -i 's/static constexpr int kBlockM = HD <= 128 ? 128 : 64;/static constexpr int kBlockM = 64;/' csrc/cuda/kernels/v3_mma/tile_sizes.h
run bm64 --no-check
