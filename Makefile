# Two commands do all the set-up on a fresh machine:
#   make bench   the main job: build, then the quick benchmark with plots on whatever device is here
#   make test    build, then the test suite
# Both create (or reuse) .venv with --system-site-packages, so an installed torch is reused;
# torch==2.13.0 is installed only when no torch is importable.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-installed
PYTEST_ARGS ?=

.PHONY: test bench build venv clean

$(PY):
	$(PYTHON) -m venv --system-site-packages $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -q numpy pytest hypothesis ninja pybind11 matplotlib tqdm wheel "setuptools>=64"
	touch $(STAMP)

venv: $(STAMP)

build: $(STAMP)
	MAX_JOBS=$${MAX_JOBS:-4} $(PY) -m pip install --no-build-isolation -e . -q

test: build
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: build
	$(PY) benchmarks/bench.py --quick

clean:
	rm -rf build *.egg-info flash_attn_ext/*.so
