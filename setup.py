"""Builds flash_attn_ext._C: CPU kernels always, CUDA kernels when torch has CUDA and nvcc is found.

FLASH_ATTN_EXT_FORCE_CUDA=1 builds the CUDA sources even without a visible GPU (CUDA_HOME must be set or found);
FLASH_ATTN_EXT_FORCE_CPU=1 skips them. TORCH_CUDA_ARCH_LIST picks the archs; without it and without a visible
GPU we build for sm_80 and sm_90 (sm_90a for the Hopper kernel).
"""
import glob
import os
import sys

from setuptools import find_packages, setup
from torch.utils import cpp_extension

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCHS = "8.0;9.0"


def want_cuda() -> bool:
    if os.environ.get("FLASH_ATTN_EXT_FORCE_CPU") == "1":
        return False
    if os.environ.get("FLASH_ATTN_EXT_FORCE_CUDA") == "1":
        return True
    import torch

    return torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None


def cuda_archs() -> str:
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if archs:
        return archs
    import torch

    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        archs = f"{major}.{minor}"
    else:
        archs = DEFAULT_ARCHS
    os.environ["TORCH_CUDA_ARCH_LIST"] = archs  # read by cpp_extension for the -gencode flags
    return archs


def sources(pattern: str) -> list:
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern), recursive=True))


def loaded_libstdcxx() -> list:
    """The libstdc++ that torch runs with, to link against by path.

    Some toolchains link libstdc++ statically by default (seen on the GPU machine's /opt/gcc g++). A second,
    private libstdc++ inside our module then formats torch's error messages with its own locale tables and
    crashes inside std::ostream. Naming the shared library torch has loaded keeps one copy in the process.
    """
    if not sys.platform.startswith("linux"):
        return []
    import torch  # noqa: F401  (loads libstdc++)

    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "/libstdc++.so" in line}
    return sorted(paths)[:1]


def make_extension():
    cxx_flags = ["-O3", "-std=c++17", "-fno-math-errno"]
    # at::parallel_for is an OpenMP pragma inside torch's headers: compiled without -fopenmp it runs on one
    # thread. Linking -fopenmp reuses the libgomp torch has already loaded (same soname).
    openmp = ["-fopenmp"] if sys.platform.startswith("linux") else []
    cxx_flags += openmp
    link_args = openmp + loaded_libstdcxx()
    srcs = sources("csrc/*.cpp") + sources("csrc/common/*.cpp") + sources("csrc/cpu/**/*.cpp")
    if not want_cuda():
        return cpp_extension.CppExtension(
            "flash_attn_ext._C",
            srcs,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=link_args,
            include_dirs=[os.path.join(ROOT, "csrc")],
        )
    archs = cuda_archs()
    nvcc_flags = ["-O3", "-std=c++17", "--use_fast_math", "-lineinfo", "--expt-relaxed-constexpr", "-DWITH_CUDA"]
    if any(a.strip().startswith("9.0") for a in archs.replace(" ", ";").split(";")):
        # The Hopper rung needs sm_90a (wgmma, setmaxnreg); it lives beside the plain sm_90 code.
        nvcc_flags += ["-gencode=arch=compute_90a,code=sm_90a"]
    define = f'-DFLASH_ATTN_EXT_CUDA_ARCHS="{archs}"'
    srcs += sources("csrc/cuda/**/*.cu")
    return cpp_extension.CUDAExtension(
        "flash_attn_ext._C",
        srcs,
        extra_compile_args={"cxx": cxx_flags + ["-DWITH_CUDA", define], "nvcc": nvcc_flags + [define]},
        extra_link_args=link_args,
        include_dirs=[os.path.join(ROOT, "csrc")],
    )


setup(
    packages=find_packages(include=["flash_attn_ext", "flash_attn_ext.*"]),
    ext_modules=[make_extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
