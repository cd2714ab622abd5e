# cello1: the two commands of the README are `make reproduce` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build of torch lies on these machines' disk; an unpinned torch pulls a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
# make test needs the training, serving and cluster stacks: the tests run a real server, real (tiny) training on CPU
# and submitit jobs on its local executor.
EXTRAS ?= dev,train,api,serve,cluster,census
export HF_HUB_OFFLINE ?= 1
export MPLBACKEND ?= Agg

.PHONY: install lock test test-nbs test-py test-verl verl-venv reproduce reproduce-micro bench export clean-nbs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# pip's "Location ... is ignored" lines (an extra local index without every package) are filtered out.
PIP_QUIET := 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }

# The exact versions of requirements-lock.txt first (what the tests last passed with), then cello1 itself, then
# `pip check` so that a lock out of step with the bounds in settings.ini fails here, not later.
LOCK ?= requirements-lock.txt
$(VENV)/.installed: $(BIN)/python setup.py settings.ini $(LOCK)
	set -o pipefail; $(BIN)/python -m pip install -q "$(TORCH_SPEC)" $(PIP_QUIET)
	set -o pipefail; $(BIN)/python -m pip install -q -r $(LOCK) $(PIP_QUIET)
	set -o pipefail; $(BIN)/python -m pip install -q --no-deps -e ".[$(EXTRAS)]" $(PIP_QUIET)
	$(BIN)/python -m pip check
	touch $@

# Rewrite the lock from a fresh install of the bounds in settings.ini (needs the package index).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	set -o pipefail; .lock-venv/bin/python -m pip install -q "$(TORCH_SPEC)" $(PIP_QUIET)
	set -o pipefail; .lock-venv/bin/python -m pip install -q ".[$(EXTRAS)]" $(PIP_QUIET)
	{ head -2 $(LOCK); .lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^cello1' \
	  | sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/'; } > $(LOCK).new && mv $(LOCK).new $(LOCK)
	rm -rf .lock-venv

install: $(VENV)/.installed

test: install test-nbs test-py

test-nbs: install
	$(BIN)/nbdev_test --n_workers 2

test-py: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q -m "not verl" --durations=15 tests

# verl pins transformers<5.11, so it cannot share .venv: a throwaway venv (keeping the CPU torch) lets the tests
# compose verl's own Hydra config with every rendered GRPO command. ~2 GB, ~1.5 min on a fresh machine.
VERL_VENV ?= .verl-venv
$(VERL_VENV)/.installed:
	$(PYTHON) -m venv $(VERL_VENV)
	set -o pipefail; $(VERL_VENV)/bin/python -m pip install -q "$(TORCH_SPEC)" $(PIP_QUIET)
	set -o pipefail; $(VERL_VENV)/bin/python -m pip install -q "verl==0.9.1" $(PIP_QUIET)
	touch $@

verl-venv: $(VERL_VENV)/.installed

test-verl: install verl-venv
	PATH="$(abspath $(BIN)):$$PATH" CELLO1_VERL_PYTHON="$(abspath $(VERL_VENV))/bin/python" $(BIN)/python -m pytest -q -m verl tests

# make reproduce uses a finished make reproduce-micro run (results/micro/micro.json) when there is one, and says so.
reproduce: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/cello1 reproduce --profile embedded

# Cell-o1 in miniature: a 0.56M-parameter model trained from scratch by cello1's SFT and GRPO (TRL) on 2 CPU cores.
reproduce-micro: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/cello1 reproduce --profile embedded --preset micro --results results/micro

bench: install
	$(BIN)/cello1 bench topgenes

# Developer helpers: regenerate cello1/ from the notebooks and strip notebook noise before committing.
export: install
	$(BIN)/nbdev_export

clean-nbs: install
	$(BIN)/nbdev_clean
