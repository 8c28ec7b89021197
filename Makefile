# Switchboard — `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
# Development settings for `make run` / `make token` (never use these in production).
DEV_SECRET ?= dev-secret-change-me-0123456789abcdef
DEV_API_KEY ?= dev-api-key
LISTEN ?= 0.0.0.0:8080
ADMIN_LISTEN ?= 0.0.0.0:9090
USER_ID ?= alice
DEV_ENV = SWITCHBOARD_JWT_SECRET=$(DEV_SECRET) SWITCHBOARD_API_KEY=$(DEV_API_KEY)

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps
deps: ## Install what the build and tests need (rustfmt, clippy, redis-server)
	@command -v $(CARGO) >/dev/null || { echo "cargo is required: install Rust from rustup.rs"; exit 1; }
	@$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy
	@command -v redis-server >/dev/null || { \
		echo "installing redis-server (apt-get)"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@command -v redis-server >/dev/null || { echo "redis-server is required (apt-get install redis-server)"; exit 1; }

.PHONY: build
build: deps ## Build the release binary (target/release/switchboard)
	$(CARGO) build --release --locked -p switchboard-gateway

.PHONY: run
run: build ## Start one node on the embedded backplane (dev secret and API key)
	@echo "public ws://localhost:$(lastword $(subst :, ,$(LISTEN)))/ws   internal http://localhost:$(lastword $(subst :, ,$(ADMIN_LISTEN)))"
	@echo "mint a token: make token USER_ID=alice   API key: $(DEV_API_KEY)"
	$(DEV_ENV) ./target/release/switchboard serve --listen $(LISTEN) --admin-listen $(ADMIN_LISTEN)

.PHONY: cluster
cluster: build ## Start Redis and three nodes on loopback (public 8081-8083, internal 9091-9093)
	$(DEV_ENV) ./deploy/local-cluster.sh ./target/release/switchboard

.PHONY: token
token: ## Print a development token for USER_ID (rooms room:* to subscribe and publish)
	@$(DEV_ENV) $(CARGO) run -q --release -p switchboard-gateway -- token --sub $(USER_ID) --channels 'room:*' --publish 'room:*,user:*'

.PHONY: fmt
fmt: deps ## Format the code
	$(CARGO) fmt --all

.PHONY: fmt-check
fmt-check: deps ## Check formatting
	$(CARGO) fmt --all --check

.PHONY: clippy
clippy: deps ## Lint with clippy, warnings are errors
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

.PHONY: test
test: deps fmt-check clippy ## Format check, clippy and the whole test suite
	$(CARGO) test --workspace --locked

.PHONY: ci
ci: test ## Exactly what CI runs (.ci/run)
