# Thin wrapper: every target delegates to `cargo xtask` (the tooling is Rust, in xtask/).
# `make help` lists the targets by category.

.DEFAULT_GOAL := help
SHELL := /bin/bash
CARGO ?= cargo
ARGS ?=
COMPOSE_PROD := docker compose -f docker-compose.yml

# Colour only on a terminal and never with NO_COLOR.
ifeq ($(shell [ -t 1 ] && [ -z "$$NO_COLOR" ] && echo yes),yes)
CYAN := \033[36m
GREEN := \033[32m
RED := \033[31m
BOLD := \033[1m
RESET := \033[0m
endif

##@ Help

.PHONY: help
help: ## List the targets by category
	@awk 'BEGIN {FS = ":.*## "} \
		/^##@/ { printf "\n$(BOLD)%s$(RESET)\n", substr($$0, 5); next } \
		/^[a-zA-Z0-9_-]+:.*## / { printf "  $(CYAN)%-16s$(RESET) %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
	@printf "\nPass flags to the xtask with ARGS, e.g. make test-scaling ARGS='--replicas 8'\n"

##@ Setup

.PHONY: check-docker
check-docker: ## Check docker, its daemon and Compose v2 (fetches a pinned Compose v2 if needed)
	@$(CARGO) xtask check-docker

.PHONY: images
images: check-docker ## Build or obtain the images (local ones from Debian's packages when nothing can be pulled)
	@$(CARGO) xtask images $(ARGS)

##@ Quality

.PHONY: test
test: ## Run all the tests: unit, api and scaling check on MariaDB 10.11 and MySQL 9, faults, resilience
	@$(CARGO) xtask test $(ARGS)

.PHONY: test-matrix
test-matrix: ## Run every test stage on each server: MariaDB 10.11, MySQL 9, MariaDB 11.8
	@$(CARGO) xtask test --matrix $(ARGS)

.PHONY: test-scaling
test-scaling: check-docker ## Pre-deploy check: N replicas healthy, parallel start, shared data, one migrator
	@printf "$(CYAN)Running the scaling check...$(RESET)\n"
	@if $(CARGO) xtask test-scaling $(ARGS); then \
		printf "$(GREEN)test-scaling: passed$(RESET)\n"; \
	else \
		code=$$?; printf "$(RED)test-scaling: failed (exit $$code)$(RESET)\n"; exit $$code; \
	fi

.PHONY: test-faults
test-faults: check-docker ## Inject each real fault and check that test-scaling catches it
	@$(CARGO) xtask test-faults $(ARGS)

# The workflow linters, from PyPI, pinned with hashes in .github/lint-requirements.txt, in their own
# virtualenv under target/tools/ (nothing is installed system-wide): check-jsonschema validates each
# workflow against the GitHub workflow schema it ships, zizmor audits it offline (settings in
# .github/zizmor.yml). Both are wheels: nothing is built or downloaded from elsewhere. The venv is
# made again when the requirements change. LINT_WORKFLOWS picks other files (e.g. to see a
# broken one fail).
LINT_REQUIREMENTS := .github/lint-requirements.txt
LINT_VENV := target/tools/workflow-lint-$(shell sha256sum $(LINT_REQUIREMENTS) 2>/dev/null | cut -c1-12)
LINT_WORKFLOWS ?= $(wildcard .github/workflows/*.yml)

$(LINT_VENV)/.installed: $(LINT_REQUIREMENTS)
	@command -v python3 >/dev/null || { echo "make lint: python3 is needed for the workflow linters"; exit 2; }
	@rm -rf $(LINT_VENV)
	@python3 -m venv $(LINT_VENV) >$(LINT_VENV).log 2>&1 \
		|| { tail -n 3 $(LINT_VENV).log; echo "make lint: python3 -m venv failed (on Debian: apt-get install python3-venv)"; exit 2; }
	@$(LINT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-cache-dir \
		--require-hashes --only-binary=:all: -r $(LINT_REQUIREMENTS) >>$(LINT_VENV).log 2>&1 \
		|| { tail -n 3 $(LINT_VENV).log; rm -rf $(LINT_VENV); \
		     echo "make lint: installing $(LINT_REQUIREMENTS) failed (full log: $(LINT_VENV).log)"; exit 2; }
	@touch $@

.PHONY: lint
lint: $(LINT_VENV)/.installed ## rustfmt check, clippy with warnings denied, the CI workflow's schema and zizmor audit
	@$(CARGO) fmt --all -- --check
	@$(CARGO) clippy --workspace --all-targets -- -D warnings
	@$(MAKE) --no-print-directory lint-workflows
	@$(MAKE) --no-print-directory lint-selftest

.PHONY: lint-workflows
lint-workflows: $(LINT_VENV)/.installed ## Only the workflow checks (LINT_WORKFLOWS=FILES to check others)
	@$(LINT_VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows $(LINT_WORKFLOWS)
	@$(LINT_VENV)/bin/zizmor --offline --no-progress --config .github/zizmor.yml $(LINT_WORKFLOWS)

# The workflow checks must fail on broken workflows: a schema error (misspelt runs-on) and a
# template injection that is valid YAML and schema (only zizmor catches it).
BROKEN := xtask/testdata/workflows
.PHONY: lint-selftest
lint-selftest: $(LINT_VENV)/.installed ## Prove the workflow checks fail on broken workflows
	@if $(LINT_VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows $(BROKEN)/broken-schema.yml >/dev/null 2>&1; then \
		echo "make lint: check-jsonschema accepted $(BROKEN)/broken-schema.yml"; exit 1; fi
	@out=$$($(LINT_VENV)/bin/zizmor --offline --no-progress --config .github/zizmor.yml $(BROKEN)/broken-injection.yml 2>/dev/null); \
		if [ $$? -eq 0 ] || ! grep -q 'template-injection' <<<"$$out"; then \
		echo "make lint: zizmor did not report the template injection in $(BROKEN)/broken-injection.yml"; exit 1; fi
	@echo "workflow checks: both broken workflows refused"

##@ Stack (by hand; needs the `docker compose` plugin and a .env, see README)

.PHONY: up
up: ## Start the stack with 4 replicas
	$(COMPOSE_PROD) up -d --scale api=4

.PHONY: ps
ps: ## Show the stack's containers
	$(COMPOSE_PROD) ps

.PHONY: down
down: ## Stop the stack (volumes are kept)
	$(COMPOSE_PROD) down --remove-orphans
