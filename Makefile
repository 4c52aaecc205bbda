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

NODE_STAMP := node_modules/.installed-stamp
# checkov pins an old boto3: it lives in its own tools venv, never in the runtime venv.
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed-stamp
# Terraform/cdktf environment (offline provider mirror, jsii cache in the repo) from the toolkit.
TF_ENV = env $$($(TOOLKIT) tf-env | xargs)
CDKTF = $(TF_ENV) npx --no-install cdktf

.PHONY: help setup demo test train bench clean synth deploy destroy local-up local-down lint build push release render plan

help: ## List every target
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  Variables: ENV=$(ENV) (one of: $$(ls environments | sed 's/\.yaml//' | tr '\n' ' '))"

# The venv is rebuilt only when pyproject.toml changes, so a second run is instant.
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq python3-venv)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,infra]'
	@touch $@

# cdktf-cli pinned in package.json / package-lock.json.
$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq nodejs npm)
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(TOOLS_STAMP): tools-requirements.txt
	@test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check -r tools-requirements.txt
	@touch $@

# Debian packages for the local environment: Docker engine, OCI registry, debootstrap (base image).
APT_PACKAGES := docker.io docker-registry debootstrap
.local/apt-stamp:
	@if ! (command -v dockerd && command -v docker-registry && command -v debootstrap) >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	  else echo "install the Debian packages: sudo apt-get install $(APT_PACKAGES)"; exit 1; fi; fi
	@mkdir -p .local && touch $@

setup: $(STAMP) $(NODE_STAMP) $(TOOLS_STAMP) .local/apt-stamp ## Create .venv, .venv-tools, node_modules; install Debian packages (idempotent)

demo: setup ## The main job on the local environment: deploy the stack, train (5-fold CV), evaluate, release and serve
	$(MAKE) --no-print-directory deploy ENV=local
	$(TOOLKIT) train --env local --cv 5
	$(TOOLKIT) evaluate --model artifacts/local/latest --data data/heart-cleveland.csv
	@echo "model:   $$(readlink -f artifacts/local/latest)"
	@echo "report:  $$(readlink -f artifacts/local/latest)/metrics.json and training_curves.png"
	$(MAKE) --no-print-directory release ENV=local
	$(TOOLKIT) status --env local

train: setup ## Train on ENV's dataset (make train ENV=dev)
	$(TOOLKIT) train --env $(ENV)

test: setup ## Run the whole test suite
	$(BIN)/pytest -q

bench: setup ## Benchmarks: training (ours vs PyTorch vs scikit-learn), serving (ours vs bare FastAPI)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[bench]'
	$(BIN)/python bench/train_throughput.py
	$(TOOLKIT) train --env local --epochs 50 --json >/dev/null
	$(BIN)/python bench/serve_throughput.py

build: setup ## Build ENV's serving image with artifacts/ENV/latest baked in (local: starts the services first)
	$(TOOLKIT) build --env $(ENV)

push: setup ## Push the last built image to ENV's registry (ECR login via boto3)
	$(TOOLKIT) push --env $(ENV)

# Each step is timed; `toolkit deploy` waits for the rollout (rolling back on failure) and then
# smoke-tests /v1/predict through the Service (local: the Docker runtime's endpoint).
release: setup ## build → push → deploy → smoke test of ENV's serving image (make release ENV=dev)
	@set -e; total=$$(date +%s%N); \
	for step in build push deploy; do \
	  start=$$(date +%s%N); $(TOOLKIT) $$step --env $(ENV); \
	  echo "release: $$step took $$(( ($$(date +%s%N) - start) / 1000000 )) ms" >&2; \
	done; \
	echo "release: $(ENV) done in $$(( ($$(date +%s%N) - total) / 1000000 )) ms" >&2

render: setup ## Print ENV's Kubernetes manifests (YAML)
	@$(TOOLKIT) render --env $(ENV)

plan: setup ## Review ENV's Terraform plan as PR markdown (.cache/plan-ENV.md; exit 3 = protected resources destroyed)
	$(TOOLKIT) plan --env $(ENV) --out .cache/plan-$(ENV).md

synth: setup ## Synthesize every stack into cdktf.out/ (JSON; `npx cdktf synth --hcl` for HCL)
	$(TOOLKIT) config validate
	$(CDKTF) synth

deploy: setup ## cdktf deploy platform-ENV (local: starts moto and bootstraps the state bucket first)
	$(TOOLKIT) config validate $(ENV)
	$(TOOLKIT) state bootstrap --env $(ENV)
	$(CDKTF) deploy platform-$(ENV) --auto-approve --skip-provider-lock --outputs-file .cache/outputs-$(ENV).json
	$(TOOLKIT) outputs --env $(ENV)

destroy: setup ## cdktf destroy platform-ENV
	$(TOOLKIT) config validate $(ENV)
	$(CDKTF) destroy platform-$(ENV) --auto-approve --skip-provider-lock

lint: setup ## checkov on the synthesized prod stack (skips and their reasons: toolkit/checkov_skips.py)
	$(BIN)/pytest -q tests/test_checkov.py

local-up: setup ## Start the local services (moto) and show them
	$(TOOLKIT) local up

local-down: ## Stop the local services
	$(TOOLKIT) local down

clean: ## Remove the venv, node_modules, artifacts, caches and synthesized stacks
	-$(TOOLKIT) local down
	rm -rf $(VENV) $(TOOLS) node_modules artifacts .pytest_cache cdktf.out .cache .local
