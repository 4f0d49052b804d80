"""Every CUDA source that includes no torch header compiles with plain nvcc (sm_80, sm_90, sm_90a).

CI machines have nvcc but no GPU: this is how a CUDA syntax or type error fails CI. The GPU tests
themselves run on a GPU machine through scripts/gpu_check.sh.
"""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(shutil.which(os.environ.get("NVCC", "nvcc")) is None, reason="nvcc is not installed")
@pytest.mark.skipif(os.environ.get("FLASH_ATTN_EXT_SKIP_NVCC_CHECK") == "1",
                    reason="the GPU check's own build compiled the kernels (scripts/gpu_check.sh sets this)")
def test_cuda_sources_compile_with_nvcc():
    script = os.path.join(ROOT, "scripts", "compile_cuda.sh")
    done = subprocess.run(["bash", script], cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    assert "compilations ok" in done.stdout
