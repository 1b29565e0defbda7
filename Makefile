# CodeLupe: `make run` sets up and runs the whole pipeline once; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
# Where a CPU build of torch comes from on a machine without one at hand, e.g.
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu make setup
TORCH_INDEX_URL ?=
BIN := $(VENV)/bin

.PHONY: setup system-deps run test ui lint clean-data

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first: the CUDA build where a GPU is present, else the CPU build (never gigabytes of CUDA wheels
# on a CPU box). The project's `torch>=2.4` is then already satisfied and pip leaves it alone.
$(VENV)/.installed: $(BIN)/activate pyproject.toml constraints.txt
	@if $(BIN)/python -c "import torch" 2>/dev/null; then echo "torch already installed"; \
	elif command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/pip install -q "torch==$(TORCH_VERSION)"; \
	else $(BIN)/pip install -q "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)); fi
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	@touch $@

setup: $(VENV)/.installed system-deps

# Debian packages the product and its tests use: bubblewrap gives the code-execution sandbox its namespaces
# (without it the sandbox degrades, loudly); chromium and its driver run the browser tests of the UIs.
SYSTEM_PACKAGES := bwrap:bubblewrap chromium:chromium chromedriver:chromium-driver
system-deps:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing"; \
	    apt-get install -y -q $$missing >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && \
	      apt-get install -y -q $$missing >/dev/null 2>&1; } || echo "warning: could not install$$missing"; \
	  else echo "note: install$$missing (apt-get install$$missing) for the sandbox and the browser tests"; fi; \
	fi

run: setup
	$(BIN)/codelupe run

test: setup
	$(BIN)/python -m pytest

ui: setup
	$(BIN)/codelupe ui

lint: setup
	$(BIN)/ruff check codelupe_pipeline codelupe_pipeline_tests benchmarks
	$(BIN)/ruff format --check codelupe_pipeline codelupe_pipeline_tests benchmarks
	$(BIN)/mypy

clean-data:
	rm -rf data
