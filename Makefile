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
# Each step's whole output goes to .local/logs/<step>.log; one line with its time is printed.
# VERBOSE=1 (or V=1) shows everything as it happens.
STEP := scripts/step
export VERBOSE V

.PHONY: help setup demo demo-loop retrain promote rollout test test-fast train bench clean synth synth-hcl dashboards deploy destroy local-up local-down lint lint-code build push release render plan cost

help: ## List every target
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  Variables: ENV=$(ENV) (one of: $$(ls environments | sed 's/\.yaml//' | tr '\n' ' '))"

# The venv is rebuilt only when pyproject.toml changes, so a second run is instant.
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || $(STEP) setup-apt-venv bash -c 'apt-get update -qq && apt-get install -y -qq python3-venv'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(STEP) setup-venv $(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,infra]'
	@touch $@

# cdktf-cli pinned in package.json / package-lock.json.
$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || $(STEP) setup-apt-npm bash -c 'apt-get update -qq && apt-get install -y -qq nodejs npm'
	@$(STEP) setup-npm npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(TOOLS_STAMP): tools-requirements.txt
	@test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	@$(STEP) setup-tools-venv $(TOOLS)/bin/pip install --quiet --disable-pip-version-check -r tools-requirements.txt
	@touch $@

# Debian packages for the local environment: Docker engine, OCI registry, debootstrap (base image),
# Prometheus and Alertmanager, binutils (strip, for the images' wheels); only those whose command is
# missing (scripts/missing-apt-packages: a Docker engine already there, e.g. Docker CE on a hosted
# runner, is used, not replaced).
.local/apt-stamp: Makefile scripts/missing-apt-packages
	@missing="$$(bash scripts/missing-apt-packages)"; if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then $(STEP) setup-apt bash -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing"; \
	  else echo "install the Debian packages: sudo apt-get install $$missing"; exit 1; fi; fi
	@mkdir -p .local && touch $@

setup: $(STAMP) $(NODE_STAMP) $(TOOLS_STAMP) .local/apt-stamp ## Create .venv, .venv-tools, node_modules; install Debian packages (idempotent)

# One line per step (full logs in .local/logs/), then what was trained and what serves.
demo: setup ## The main job on the local environment: deploy the stack, train (5-fold CV), evaluate, release and serve
	@$(STEP) demo-stack $(MAKE) --no-print-directory deploy ENV=local
	@$(STEP) --show '^(model|test|cv\([0-9]+\)|artifact|curves) ' demo-train $(TOOLKIT) train --env local --cv 5
	@$(STEP) --tail 5 demo-evaluate $(TOOLKIT) evaluate --model artifacts/local/latest --env local --data data/heart-cleveland.csv
	$(call release_steps,demo,local)
	@$(TOOLKIT) status --env local

# Needs what `make demo` leaves (services up, a model served): runs it first when that is missing.
demo-loop: setup ## The feedback loop on the local environment: drifted traffic → drift alert → retraining → gate → release, each step timed
	@$(TOOLKIT) loop-drill --env local --ready >/dev/null 2>&1 || $(MAKE) --no-print-directory demo
	@$(TOOLKIT) loop-drill --env local

retrain: setup ## Retrain ENV on its labelled feedback, release only past the champion/challenger gate (DRY_RUN=1: judge only)
	$(TOOLKIT) retrain --env $(ENV) $(if $(DRY_RUN),--dry-run)

train: setup ## Train on ENV's dataset (make train ENV=dev)
	$(TOOLKIT) train --env $(ENV)

# Parallel workers (pytest-xdist): a module stays in one worker, the Docker engine's tests share one
# (tests/conftest.py). Three workers on two cores: much of the suite waits on services, not the CPU.
PYTEST_WORKERS ?= 3
PYTEST_PARALLEL = -n $(PYTEST_WORKERS) --dist loadgroup --no-loadscope-reorder

test: lint-code ## Run the whole test suite in parallel (after ruff and the import-layer contracts)
	$(BIN)/pytest -q $(PYTEST_PARALLEL)

test-fast: setup ## The tests that need no service (no moto, Docker, registry, emulator or synthesis): the edit loop
	$(BIN)/pytest -q $(PYTEST_PARALLEL) -m "not services"

lint-code: setup ## ruff, and the import-layer contracts of toolkit/ (lint-imports; see pyproject.toml)
	@$(STEP) ruff $(BIN)/ruff check .
	@$(STEP) lint-imports $(BIN)/lint-imports

bench: setup ## Benchmarks: training speed and accuracy (ours vs PyTorch vs scikit-learn), serving (ours, N workers, bare FastAPI, BentoML; wrk), memory
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[bench]'
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/accuracy_vs_sklearn.py
	$(TOOLKIT) train --env local --epochs 50 --json >/dev/null
	$(BIN)/python bench/serve_throughput.py
	$(BIN)/python bench/memory.py

build: setup ## Build ENV's serving image with artifacts/ENV/latest baked in (local: starts the services first)
	$(TOOLKIT) build --env $(ENV)

push: setup ## Push the last built image to ENV's registry (ECR login via boto3)
	$(TOOLKIT) push --env $(ENV)

# $(call release_steps,LOG_PREFIX,ENV): build → push → deploy, one timed line each; deploy waits for
# the rollout (rolling back on failure), smoke-tests /v1/predict and shows the prediction.
define release_steps
	@$(STEP) --show '^built ' $(1)-build $(TOOLKIT) build --env $(2)
	@$(STEP) --show '^pushed ' $(1)-push $(TOOLKIT) push --env $(2)
	@$(STEP) --show '^(deployed|smoke) ' $(1)-deploy $(TOOLKIT) deploy --env $(2)
endef

release: setup ## build → push → deploy → smoke test of ENV's serving image (make release ENV=dev)
	$(call release_steps,release-$(ENV),$(ENV))

promote: setup ## Promote FROM's verified release to ENV by digest (make promote FROM=staging ENV=prod; the promote role); then make rollout
	@test -n "$(FROM)" || { echo "FROM is required: the environment the release was verified in (make promote FROM=staging ENV=prod)"; exit 2; }
	@$(STEP) --show '^(promoted|model) ' promote-$(ENV) $(TOOLKIT) promote --from $(FROM) --to $(ENV)

rollout: setup ## Deploy ENV's last pushed or promoted release, smoke-test it and record it as verified (make rollout ENV=prod)
	@$(STEP) --show '^(deployed|smoke) ' rollout-$(ENV) $(TOOLKIT) deploy --env $(ENV)

render: setup ## Print ENV's Kubernetes manifests (YAML)
	@$(TOOLKIT) render --env $(ENV)

plan: setup ## Review ENV's Terraform plan as PR markdown (.cache/plan-ENV.md; exit 3 = protected resources destroyed)
	$(TOOLKIT) plan --env $(ENV) --out .cache/plan-$(ENV).md

cost: setup ## ENV's monthly cost, line by line with each price's source, from its synthesized stack (no plan)
	$(TOOLKIT) cost --env $(ENV)

synth: setup ## Synthesize every stack into cdktf.out/ (JSON; `npx cdktf synth --hcl` for HCL)
	@$(STEP) validate $(TOOLKIT) config validate
	@$(STEP) synth $(CDKTF) synth

dashboards: setup ## Regenerate the Grafana dashboards (toolkit/monitoring/dashboards/<env>.json) from toolkit/monitoring/panels.py
	@$(STEP) dashboards $(BIN)/python -m toolkit.monitoring.dashboard

synth-hcl: setup ## Every stack as plain Terraform HCL in cdktf.out/hcl/stacks/<stack>/cdk.tf (the way out of CDKTF; README "Leaving CDKTF")
	@$(STEP) --show '^platform-' synth-hcl $(TOOLKIT) hcl --out cdktf.out/hcl

deploy: setup ## cdktf deploy platform-ENV (local: starts moto and bootstraps the state bucket first)
	@$(STEP) deploy-$(ENV)-validate $(TOOLKIT) config validate $(ENV)
	@$(STEP) --show '^state bucket' deploy-$(ENV)-state $(TOOLKIT) state bootstrap --env $(ENV)
	@$(STEP) --show 'Apply complete!' deploy-$(ENV)-cdktf $(CDKTF) deploy platform-$(ENV) --auto-approve --skip-provider-lock --outputs-file .cache/outputs-$(ENV).json
	@$(TOOLKIT) outputs --env $(ENV)

destroy: setup ## cdktf destroy platform-ENV
	@$(STEP) destroy-$(ENV)-validate $(TOOLKIT) config validate $(ENV)
	@$(STEP) --show 'Destroy complete!' destroy-$(ENV)-cdktf $(CDKTF) destroy platform-$(ENV) --auto-approve --skip-provider-lock

lint: lint-code ## ruff, import-layer contracts, and checkov on the synthesized prod stack (skips: toolkit/terraform/checkov_skips.py)
	$(BIN)/pytest -q tests/test_checkov.py

local-up: setup ## Start the local services (moto) and show them
	$(TOOLKIT) local up

local-down: ## Stop the local services
	$(TOOLKIT) local down

clean: ## Remove the venv, node_modules, artifacts, caches and synthesized stacks
	-$(TOOLKIT) local down
	rm -rf $(VENV) $(TOOLS) node_modules artifacts .pytest_cache cdktf.out .cache .local
