#!/usr/bin/env bash
# The GPU check, on a machine with a CUDA GPU: versions, build, tests, compute-sanitizer,
# a bit-identical repeat check and the benchmark, all logged under OUTDIR, then a short
# summary printed last.
#
#   scripts/gpu_check.sh OUTDIR
#
# Files under OUTDIR (few, on purpose): check.log (every step's output), build.log,
# junit.xml, sanitizer.log, bench.csv or bench/ (benchmarks/bench.py), summary.txt.
# GPU_CHECK_SKIP: space-separated steps to leave out (tests sweep big sanitizer repeat bench).
# GPU_CHECK_SANITIZERS: the compute-sanitizer tools to run (default: memcheck racecheck initcheck synccheck).
# GPU_CHECK_BENCH=builtin: time with scripts/cuda_bench.py even where benchmarks/bench.py exists.
# GPU_CHECK_COMMIT: the commit to report where the checkout has no .git (a copied tree).
# GPU_CHECK_BUDGET: seconds for the whole run (default 530); a step that would start past
# it is skipped and each step's timeout is cut to what is left, so the summary always prints.
set -uo pipefail

OUTDIR=${1:?usage: scripts/gpu_check.sh OUTDIR}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
cd "$(dirname "$0")/.."
LOG=$OUTDIR/check.log
SUMMARY=$OUTDIR/summary.txt
STEP=$OUTDIR/step.tmp
: >"$LOG"
: >"$SUMMARY"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
export FLASH_ATTN_EXT_SKIP_NVCC_CHECK=1
PY=${PYTHON:-python3}
SKIP=" ${GPU_CHECK_SKIP:-} "
T0=$(date +%s)
DEADLINE=$((T0 + ${GPU_CHECK_BUDGET:-530}))

note() { echo "$*" | tee -a "$SUMMARY"; }
elapsed() { echo $(($(date +%s) - T0)); }

# step NAME CAP_SECONDS CMD...: runs CMD with its output in $STEP (also appended to check.log)
# under a timeout of CAP_SECONDS or the time left, whichever is less. Returns CMD's status,
# 124 on timeout, 125 when skipped.
step() {
  local name=$1 cap=$2
  shift 2
  local left=$((DEADLINE - $(date +%s) - 15))
  : >"$STEP"
  if [[ "$SKIP" == *" $name "* ]]; then
    echo "skipped (GPU_CHECK_SKIP)" >"$STEP"
    return 125
  fi
  if ((left < 20)); then
    echo "skipped: out of time budget" >"$STEP"
    note "$name: skipped, out of time budget"
    return 125
  fi
  ((cap > left)) && cap=$left
  echo -e "\n===== $name (t=$(elapsed) s, timeout ${cap} s): $*" >>"$LOG"
  timeout "$cap" "$@" >"$STEP" 2>&1
  local rc=$?
  cat "$STEP" >>"$LOG"
  return $rc
}
checks() { grep '^CHECK' "$STEP" | sed 's/^CHECK //' | paste -sd ';' -; }

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  nvcc --version | tail -2
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  git log -1 --format='commit %H %s' 2>/dev/null || true
} >>"$LOG" 2>&1
note "device: $($PY -c 'import torch; print(torch.cuda.get_device_name())' 2>/dev/null), commit ${GPU_CHECK_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo '?')}"

echo "===== build (MAX_JOBS=${MAX_JOBS:-16})" >>"$LOG"
if MAX_JOBS=${MAX_JOBS:-16} $PY setup.py build_ext --inplace >"$OUTDIR/build.log" 2>&1; then
  note "build: ok in $(elapsed) s; kernels: $($PY -c "import torch, flash_attn_ext as f; print(' '.join(k['name'] for k in f.kernels('cuda')))" 2>&1)"
else
  note "build: FAILED (build.log)"
  tail -40 "$OUTDIR/build.log"
  exit 1
fi

if [[ -d tests ]]; then
  # pytest-xdist, where installed, runs the suite in worker processes: a test that crashes
  # its process is reported as failed and the others still run.
  xdist=()
  # One CPU thread per worker: 16 workers of 16 threads each made the CPU float64 gradchecks 10x slower.
  $PY -c "import xdist" 2>/dev/null && xdist=(-n 16 --max-worker-restart 100)
  step tests 360 env OMP_NUM_THREADS=1 $PY -m pytest -q -rfE -p no:cacheprovider "${xdist[@]}" tests \
    --durations=10 --junitxml="$OUTDIR/junit.xml"
  rc=$?
  ((rc != 125)) && note "pytest: rc=$rc $(grep -E '[0-9]+ (passed|failed|error)' "$STEP" | tail -1)"
else
  note "pytest: no tests/ folder in this checkout"
fi

step sweep 240 $PY scripts/cuda_rungs_check.py
rc=$?
((rc != 125)) && note "sweep vs float64 ref: rc=$rc $(checks)"

step big 150 $PY scripts/cuda_rungs_check.py --big
rc=$?
((rc != 125)) && note "B*H>65535, 2^31 offsets: rc=$rc $(checks)"

verdicts=""
: >"$OUTDIR/sanitizer.log"
for tool in ${GPU_CHECK_SANITIZERS:-memcheck racecheck initcheck synccheck}; do
  # Every kernel is instrumented, torch's too: initcheck only knows memory as written when
  # the kernel that wrote it was instrumented, so a kernel-name filter gives false reports.
  # The ladder's quick sweep, v3's two warp tiles, v4's tiles (E 64/128/256), v4's bool-mask path,
  # then the backward kernels (bwd_wgmma where it applies, bwd_mma for the rest).
  for script in "scripts/cuda_rungs_check.py --quick" scripts/v3_sanitize.py scripts/v4_sanitize.py \
    "scripts/v4_sanitize.py --mask" scripts/bwd_sanitize.py; do
    step sanitizer 150 env PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool "$tool" \
      --print-limit 10 $PY $script
    rc=$?
    ((rc == 125)) && break 2
    { echo "----- $tool $script rc=$rc"; cat "$STEP"; } >>"$OUTDIR/sanitizer.log"
    verdict=$(grep -E '(ERROR|RACECHECK) SUMMARY' "$STEP" | tail -1 | sed 's/^=* *//')
    verdicts+="$tool ${script#scripts/} rc=$rc: ${verdict:-no summary line} $(checks) | "
  done
done
[[ -n "$verdicts" ]] && note "sanitizer: $verdicts"

step repeat 120 $PY scripts/cuda_rungs_check.py --repeat 20
rc=$?
((rc != 125)) && note "20 runs bit-identical: rc=$rc $(checks)"

BENCH_TABLE=""
if [[ -f benchmarks/bench.py && "${GPU_CHECK_BENCH:-}" != builtin ]]; then
  step bench 240 $PY benchmarks/bench.py --grid --dtype bfloat16 --head-dims 64 128 --seqlens 1024 4096 \
    --providers v0 v1 v2 v3 v4 sdpa_flash sdpa_cudnn sdpa_efficient \
    --out "$OUTDIR/bench" --no-plots
  rc=$?
  ((rc != 125)) && note "bench (benchmarks/bench.py): rc=$rc" && BENCH_TABLE=$(tail -30 "$STEP")
fi
if [[ ! -f benchmarks/bench.py || "${GPU_CHECK_BENCH:-}" == builtin ]] || ((rc != 0 && rc != 125)); then
  step bench 300 $PY scripts/cuda_bench.py --dtypes bfloat16 float32 --out "$OUTDIR/bench.csv"
  rc=$?
  ((rc != 125)) && note "bench (scripts/cuda_bench.py): rc=$rc" && BENCH_TABLE=$(sed -n '/TFLOP\/s on/,$p' "$STEP")
fi
rm -f "$STEP"

note "total: $(elapsed) s"
cat "$SUMMARY" >>"$LOG"
echo
echo "==================== GPU CHECK SUMMARY ===================="
cat "$SUMMARY"
if [[ -n "$BENCH_TABLE" ]]; then echo; echo "$BENCH_TABLE"; fi
