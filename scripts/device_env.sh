# The device scripts' common environment (sourced from the repository root): the build's architecture and
# parallelism, the extension importable from the tree, unbuffered single-threaded Python; and
#   build_ext LOG   builds the extension in place into LOG, printing its tail and failing when the build fails.
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} FLASH_ATTN_EXT_SKIP_NVCC_CHECK=1
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 PYTHONPATH=$PWD
build_ext() { python3 setup.py build_ext --inplace >"$1" 2>&1 || { tail -40 "$1"; return 1; }; }
