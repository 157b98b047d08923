# vlmscope: `make figures` runs the suite on the bundled organism, `make test` the tests.
# Both create .venv and install on first use.

PYTHON     ?= $(shell command -v python3.11 || command -v python3)
VENV       ?= .venv
PY         := $(VENV)/bin/python
# CPU install by default (a local CPU wheel where one is provided). GPU users:
#   make setup TORCH_SPEC=torch        (Linux wheels on PyPI are CUDA builds)
TORCH_SPEC ?= torch==2.13.0
NB_ARGS    ?=
# notebooks executed at once (each kernel gets an equal share of the CPU threads; docs/performance.md)
NB_JOBS    ?= 2
PYTEST_ARGS ?=
# The oldest transformers the suite passes on, read from pyproject.toml ("transformers>=X,<Y"):
# `make test-floor` runs the fast tests in a second environment pinned to exactly that release.
FLOOR_VENV ?= .venv-floor
TRANSFORMERS_FLOOR := $(shell sed -n 's/.*"transformers>=\([0-9.]*\),.*/\1/p' pyproject.toml)

.PHONY: setup figures test test-fast test-floor lab organism bench gpu-check clean-venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev,coco,ray]"
	touch $@

setup: $(VENV)/.installed

figures: setup
	$(PY) -m vlmscope notebooks run --out figures --jobs $(NB_JOBS) $(NB_ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

$(FLOOR_VENV)/.installed: pyproject.toml
	@test -n "$(TRANSFORMERS_FLOOR)" || { echo "no transformers>=X,<Y in pyproject.toml" >&2; exit 1; }
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(FLOOR_VENV)/bin/python -m pip install --quiet "$(TORCH_SPEC)"
	$(FLOOR_VENV)/bin/python -m pip install --quiet -e ".[dev,coco]" "transformers==$(TRANSFORMERS_FLOOR)"
	touch $@

test-floor: $(FLOOR_VENV)/.installed
	@$(FLOOR_VENV)/bin/python -c "import transformers as t; assert t.__version__ == '$(TRANSFORMERS_FLOOR)', t.__version__; print('transformers', t.__version__, '(the declared floor)')"
	$(FLOOR_VENV)/bin/python -m pytest -m "not slow" $(PYTEST_ARGS)

lab: setup
	$(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 notebooks/

# Reproduce the bundled zoo (see docs/organism.md for times).
organism: setup
	$(PY) -m vlmscope organism train-zoo --out data/organism

# Speed and memory ratios of the attention backend (docs/performance.md), e.g.
#   make bench BENCH_ARGS="--threads 1"   or   BENCH_ARGS="--llava7b-config" on a GPU
BENCH_ARGS ?=
BENCH_OUT  ?= benchmarks/results.json
bench: setup
	$(PY) benchmarks/bench_attention.py --model organism --out $(BENCH_OUT) $(BENCH_ARGS)
	$(PY) benchmarks/bench_heatmaps.py --model organism --out $(BENCH_OUT:.json=-heatmaps.json) $(BENCH_ARGS)

# GPU rehearsal (docs/performance.md): selftest on CUDA for every family, then notebooks 01-09 on
# random-weight full-size LLaVA-1.5-7B and Qwen2-VL-7B; refuses (exit 3) without CUDA.
#   make gpu-check GPU_CHECK_ARGS="--dry-run"   checks the plan on a CPU
GPU_CHECK_ARGS ?=
GPU_CHECK_OUT  ?= benchmarks/results/gpu-check.json
gpu-check: setup
	$(PY) benchmarks/gpu_check.py --out $(GPU_CHECK_OUT) $(GPU_CHECK_ARGS)

clean-venv:
	rm -rf $(VENV) $(FLOOR_VENV)
