#!/usr/bin/env bash
# On the H200, < 560 s: A/B of compile-time switches in v4's config.h (or in the file AB_FILE names),
# rebuilt once per variant in one call. Each variant is NAME=SED (a sed expression applied to the file as
# committed; an empty SED builds it as committed) or NAME=@PATH (PATH's content replaces the file, e.g. an
# older version shipped beside the tree). The first variant also runs check_v4.py's sweep over
# the default and the persistent kernel on 7 CTAs, and the v4 and mask pytest files; every variant is
# timed beside SDPA flash and cuDNN (check_v4.py --no-check; args after -- passed on). config.h is
# restored at the end (the next build recompiles v4).
#
#   bash scripts/v4_config_ab.sh OUT "lazy=" "eager=s/kLazyRescale = true/kLazyRescale = false/" -- --ns 1024,4096
set -o pipefail
OUT=${1:-/tmp/v4_config_ab}
shift
variants=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do variants+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
mkdir -p "$OUT"
source scripts/device_env.sh
BUDGET_S=560
source scripts/device_clock.sh
CFG=${AB_FILE:-csrc/cuda/kernels/v4_wgmma/config.h}
cp "$CFG" "$OUT/ab_file.orig"
first=1
for spec in "${variants[@]}"; do
  name=${spec%%=*} expr=${spec#*=}
  cp "$OUT/ab_file.orig" "$CFG"
  if [ "${expr:0:1}" = "@" ]; then
    cp "${expr:1}" "$CFG" || break
  elif [ -n "$expr" ]; then
    sed -i "$expr" "$CFG"
    cmp -s "$CFG" "$OUT/ab_file.orig" && { echo "$name: '$expr' changed nothing in $CFG"; continue; }
  fi
  build_ext "$OUT/build_$name.log" || break
  since "build $name"
  if [ $first = 1 ]; then
    V4_VARIANTS=v4,v4_persist7,v4_xitem7 timeout $(cap 150 150) python3 scripts/check_v4.py --no-bench \
      --head-dims 64,128,256 >"$OUT/sweep_$name.log" 2>&1
    echo "sweep $name rc $?: $(grep -E "^correctness|failures|^FAIL" "$OUT/sweep_$name.log" | head -12 | tr '\n' ' ')"
    timeout $(cap 90 150) python3 -m pytest -q -n 12 tests/gpu tests/test_hidden_keys.py tests/test_masks.py \
      tests/test_causal.py tests/test_scale.py -p no:cacheprovider >"$OUT/pytest_$name.log" 2>&1
    echo "pytest $name rc $?: $(tail -1 "$OUT/pytest_$name.log")"
    grep -E "^FAILED" "$OUT/pytest_$name.log" | head -5
    first=0
  fi
  V4_BENCH=v4 timeout $(cap 120 40) python3 scripts/check_v4.py --no-check --no-mask \
    --json "$OUT/bench_$name.json" "$@" >"$OUT/bench_$name.log" 2>&1
  echo "== $name"; grep -A30 "^dtype" "$OUT/bench_$name.log" | grep -v failures
done
cp "$OUT/ab_file.orig" "$CFG"
since "done"
