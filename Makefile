# Every target does its own setup: a fresh clone needs only `make demo` or `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
ENV ?= local
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TOOLKIT := $(BIN)/toolkit
export TOOLKIT_ROOT := $(CURDIR)

.PHONY: help setup demo test train bench clean

help: ## List every target
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  Variables: ENV=$(ENV) (one of: $$(ls environments | sed 's/\.yaml//' | tr '\n' ' '))"

# The venv is rebuilt only when pyproject.toml changes, so a second run is instant.
$(STAMP): pyproject.toml
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq python3-venv)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

setup: $(STAMP) ## Create .venv and install the pinned dependencies (idempotent)

demo: setup ## The main job on the local environment: train (5-fold CV), evaluate, show where things are
	$(TOOLKIT) train --env local --cv 5
	$(TOOLKIT) evaluate --model artifacts/local/latest --data data/heart-cleveland.csv
	@echo "model:   $$(readlink -f artifacts/local/latest)"
	@echo "report:  $$(readlink -f artifacts/local/latest)/metrics.json and training_curves.png"

train: setup ## Train on ENV's dataset (make train ENV=dev)
	$(TOOLKIT) train --env $(ENV)

test: setup ## Run the whole test suite
	$(BIN)/pytest -q

bench: setup ## Training throughput: our core vs PyTorch CPU vs scikit-learn
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(BIN)/python bench/train_throughput.py

clean: ## Remove the venv, artifacts and caches
	rm -rf $(VENV) artifacts .pytest_cache
