#!/usr/bin/env bash
# Compiles every CUDA source that includes no torch header (kernels, instantiations,
# ptx tests) with plain nvcc, so a CUDA syntax or type error fails CI on machines
# without a GPU. Each file is built for sm_80 and sm_90, as setup.py builds it, and
# also for sm_90a when it (or a header it includes) uses Hopper-only instructions.
# Warnings are errors, on the device and the host side, and so is a serialised wgmma pipeline.
#
#   scripts/compile_cuda.sh [FILE.cu ...]   every .cu under csrc/ and scripts/ptx_tests/, or the files given;
#                                           JOBS=2 by default; NVCC picks the compiler
#
# Exit status: 0 when every file compiled, 1 otherwise, 0 with a message when nvcc is absent.
set -uo pipefail
cd "$(dirname "$0")/.."

NVCC=${NVCC:-nvcc}
if ! command -v "$NVCC" >/dev/null 2>&1; then
  echo "compile_cuda: nvcc not found: CUDA sources not compiled (set NVCC or install the CUDA toolkit)"
  exit 0
fi
JOBS=${JOBS:-2}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The same device flags as setup.py, plus warnings as errors.
FLAGS=(-c -std=c++17 -O3 --use_fast_math -lineinfo --expt-relaxed-constexpr -DWITH_CUDA
       -I csrc -Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror)

# Prints the file and every local header it includes (beside it or under csrc/), transitively.
local_includes() {
  local file=$1 dir inc
  [[ -n "${SEEN[$file]:-}" ]] && return
  SEEN[$file]=1
  echo "$file"
  dir=$(dirname "$file")
  for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$file"); do
    if [[ -f "$dir/$inc" ]]; then
      local_includes "$(realpath --relative-to=. "$dir/$inc")"
    elif [[ -f "csrc/$inc" ]]; then  # found through -I csrc
      local_includes "$(realpath --relative-to=. "csrc/$inc")"
    fi
  done
}

if (($# > 0)); then
  SOURCES=("$@")
else
  mapfile -t SOURCES < <(find csrc scripts/ptx_tests -name '*.cu' 2>/dev/null | sort)
fi
JOBLIST=$WORK/jobs
: >"$JOBLIST"
for src in "${SOURCES[@]}"; do
  declare -A SEEN=()
  mapfile -t files < <(local_includes "$src")
  unset SEEN
  if grep -qE '#[[:space:]]*include[[:space:]]*<(torch|ATen|c10)/' "${files[@]}"; then
    echo "skip (torch headers; built by setup.py): $src"
    continue
  fi
  archs="80 90"
  grep -qE 'wgmma|setmaxnreg|sm_90a|FEAT_SM90' "${files[@]}" && archs="80 90 90a"
  for a in $archs; do echo "$src $a" >>"$JOBLIST"; done
done

# sm_90a builds also fail where ptxas reports that it serialised a kernel's wgmmas (C7511: "insufficient
# register resources for the wgmma pipeline"), which compiles but runs the Hopper kernels 5-20% slower
# (NOTES_v4.md step 16).
compile_one() {
  local src=$1 arch=$2 obj verbose=()
  obj=$WORK/$(echo "$src" | tr '/' '_').$arch.o
  [[ $arch == 90a ]] && verbose=(-Xptxas -v)
  if "$NVCC" "${FLAGS[@]}" "${verbose[@]}" -gencode "arch=compute_$arch,code=sm_$arch" "$src" -o "$obj" >"$obj.log" 2>&1; then
    if grep -q "C7511" "$obj.log"; then
      echo "FAIL sm_$arch $src: ptxas serialised wgmma (C7511)"
      grep "C7511" "$obj.log" | sed 's/^/    /'
      return 1
    fi
    echo "ok   sm_$arch $src"
  else
    echo "FAIL sm_$arch $src"
    sed 's/^/    /' "$obj.log"
    return 1
  fi
}
export -f compile_one
export NVCC WORK
export FLAGS_STR="${FLAGS[*]}"

start=$(date +%s)
# xargs cannot pass a bash array, so each job rebuilds FLAGS from the exported string.
if xargs -P "$JOBS" -L 1 bash -c 'read -ra FLAGS <<<"$FLAGS_STR"; compile_one "$@"' _ <"$JOBLIST"; then
  echo "compile_cuda: $(wc -l <"$JOBLIST") compilations ok in $(($(date +%s) - start)) s"
else
  echo "compile_cuda: FAILED (see above)"
  exit 1
fi
