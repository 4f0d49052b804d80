# The device scripts' common environment (sourced from the repository root): the build's architecture and
# parallelism, the extension importable from the tree, unbuffered single-threaded Python; and
#   build_ext LOG                 builds the extension in place into LOG, printing its tail and failing when
#                                 the build fails, and naming the kernels whose wgmmas ptxas serialised
#                                 (C7511: they build but run slower; NOTES_v4.md step 16);
#   sanitize TOOL LOG SECS CMD..  compute-sanitizer TOOL over CMD with PyTorch's caching allocator off (so a
#                                 read past a tensor is a read past an allocation), output in LOG, at most
#                                 SECS seconds; exit status 9 when it reports an error;
#   begin_run SECS OUT            the start of a device script: OUT made, a wall budget of SECS seconds
#                                 (device_clock.sh's since / left / cap), the extension built into
#                                 OUT/build.log; fails when the build fails.
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} FLASH_ATTN_EXT_SKIP_NVCC_CHECK=1
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 PYTHONPATH=$PWD
SANITIZER=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
build_ext() {
  python3 setup.py build_ext --inplace >"$1" 2>&1 || { tail -40 "$1"; return 1; }
  grep -o "C7511.*function '[^']*'" "$1" | sed "s/.*function /build: ptxas serialised the wgmmas of /" | sort -u
  return 0
}
sanitize() {
  local tool=$1 log=$2 secs=$3
  shift 3
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout "$secs" "$SANITIZER" --tool "$tool" --error-exitcode 9 "$@" >"$log" 2>&1
}
begin_run() {
  mkdir -p "$2"
  BUDGET_S=$1
  source scripts/device_clock.sh
  build_ext "$2/build.log" && since "build done"
}
