# Everything a fresh machine needs: `make demo` (set up, then render the shipped model's
# gallery) and `make test` (set up, then run the test suite). Each target installs what it uses.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= out/shapesnet-atlas
# Test processes (pytest-xdist): one per core by default, each taking whole files (their module
# fixtures built once); 0 runs the suite in this process.
TEST_WORKERS ?= auto
export CUDA_HOME ?= /usr/local/cuda

.PHONY: setup build demo test bench clean

# Exact versions come from constraints.txt (add a new dependency's name here and its pin there).
$(VENV)/.deps: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt setuptools wheel
	$(PY) -m pip install -q -c constraints.txt torch torchvision numpy pillow pybind11 ninja tqdm build \
		pytest pytest-benchmark pytest-xdist matplotlib playwright nbclient nbformat ipykernel ipython ipywidgets \
		httpx2 starlette uvicorn python-multipart av
	touch $@

setup: $(VENV)/.deps build

# Rebuilt only when the C++/CUDA sources or the build script change.
$(VENV)/.built: $(VENV)/.deps setup.py $(shell find csrc -type f)
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	$(PY) -c "import pyviz_fast, json; print('built:', json.dumps({k: v for k, v in pyviz_fast.build_info().items() if k != 'parallel'}))"
	touch $@

build: $(VENV)/.built

# Every channel of ShapesNet's layers (conv3 before its ReLU: every channel renders) and its classes,
# each beside its top and bottom examples among 2,000 generated shapes images.
demo: setup
	$(VENV)/bin/pyviz-fast atlas conv1 conv2 conv3.bn2 conv4 fc --size 64 --out $(OUT) --dataset shapes:2000 --examples 6

test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

bench: setup
	$(VENV)/bin/pyviz-fast bench

clean:
	rm -rf build dist *.egg-info pyviz_fast/_C*.so $(VENV)/.built
