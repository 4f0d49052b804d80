#!/usr/bin/env bash
# On the H200, < 590 s: the forward's whole check after a softmax change in v3 and v4. First
# scripts/v4_check_device_run.sh (build, the whole pytest suite, check_v4's sweeps, compute-sanitizer over
# v4, then the v4 grid beside SDPA flash and cuDNN: args passed on); then memcheck and racecheck over
# scripts/v3_sanitize.py; then v3 beside SDPA flash (scripts/v3_vs_flash.py, E = 64, 128, 256); last, when
# V3_AB_SED is set, that sed expression applied to csrc/cuda/kernels/v3_mma/kernel.cuh (this machine's copy
# only), a rebuild, and v3 at V3_AB_DIMS (256 unless set) again, for an A/B in one call; or, when V3_AB_ENV
# is set, v3 at V3_AB_DIMS (64,128,256 unless set) again under those environment switches. Logs under OUT.
#
#   V3_AB_SED='s/.../.../' bash scripts/forward_device_run.sh OUT [check_v4.py timing args...]
#   V3_AB_ENV='FLASH_ATTN_EXT_HEAD_GROUP=1' bash scripts/forward_device_run.sh OUT [check_v4.py timing args...]
set -o pipefail
OUT=${1:-/tmp/forward_out}
shift || true
mkdir -p "$OUT/v4"
bash scripts/v4_check_device_run.sh "$OUT/v4" "$@" >"$OUT/v4.txt" 2>&1
rc_v4=$?
source scripts/device_env.sh
for t in memcheck racecheck; do
  sanitize $t "$OUT/v3_$t.log" 150 python3 scripts/v3_sanitize.py &
done
wait
timeout 120 python3 scripts/v3_vs_flash.py --label v3 --head-dims 64,128,256 >"$OUT/v3_vs_flash.txt" 2>&1
rc_v3=$?
if [ -n "${V3_AB_ENV:-}" ]; then
  # shellcheck disable=SC2086
  env $V3_AB_ENV timeout 120 python3 scripts/v3_vs_flash.py --label v3_ab --head-dims "${V3_AB_DIMS:-64,128,256}" \
    >"$OUT/v3_ab.txt" 2>&1
fi
if [ -n "${V3_AB_SED:-}" ]; then
  sed -i "$V3_AB_SED" csrc/cuda/kernels/v3_mma/kernel.cuh
  build_ext "$OUT/build_ab.log" &&
    timeout 90 python3 scripts/v3_vs_flash.py --label v3_ab --head-dims "${V3_AB_DIMS:-256}" >"$OUT/v3_ab.txt" 2>&1
fi
echo "== v4 (rc $rc_v4)"
tail -n 120 "$OUT/v4.txt" | grep -vE "^\[|^NVIDIA"
for t in memcheck racecheck; do echo "== v3 $t: $(grep -E 'SUMMARY' "$OUT/v3_$t.log")"; done
echo "== v3 vs SDPA flash (rc $rc_v3)"
cat "$OUT/v3_vs_flash.txt"
[ -n "${V3_AB_SED:-}${V3_AB_ENV:-}" ] && { echo "== v3 with '${V3_AB_SED:-}${V3_AB_ENV:-}'"; cat "$OUT/v3_ab.txt"; }
exit 0
