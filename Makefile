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

# `make test-fast`: every test that needs no Redis, Chromium, Node or Prometheus, in a minute
# or two after a build. The unit tests of every crate (the router's shared suite on memory
# among them), the protocol property tests, the load generator's selftest and the gateway's
# test binaries except the ones that need Redis or a browser throughout
# (GATEWAY_SLOW_TESTS), without their tests that need Redis (FAST_SKIP: the Redis variants
# `…::on_one_redis` / `…::on_redis_cluster` of the tests that run on several backends, and
# three idempotency tests). `make test` runs all of these and the rest.
GATEWAY_SLOW_TESTS := browser cluster redis_auth redis_cluster redis_faults
GATEWAY_FAST_TESTS = $(filter-out keys $(GATEWAY_SLOW_TESTS),$(notdir $(basename $(wildcard crates/gateway/tests/*))))
FAST_SKIP := on_one_redis on_redis_cluster cut_reply:: cost::a_key_in_redis client::a_retry_through_another_node

.PHONY: test-fast
test-fast: ## Unit tests, the router suite on memory, single-node end-to-end tests: no Redis, Chromium, Node or Prometheus (a minute or two)
	$(CARGO) test --workspace --locked --lib --bins --test proptests --test selftest \
		$(addprefix --test ,$(GATEWAY_FAST_TESTS)) -- $(addprefix --skip ,$(FAST_SKIP))

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' \
		'{ n[NR] = $$1; d[NR] = $$2; if (length($$1) > w) w = length($$1) } \
		END { for (i = 1; i <= NR; i++) printf "  \033[36m%-" w "s\033[0m  %s\n", n[i], d[i] }'

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# $(call apt_install,<shell test>,<Debian packages>[,<more apt-get flags>]): installs the
# packages with apt-get (through sudo unless root) when the test fails. Every "install what
# is missing" step of the Makefile and mk/*.mk goes through it.
apt_install = { $(1); } >/dev/null 2>&1 || { echo "installing $(2) (apt-get)"; \
	$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(3) $(2) >/dev/null; }
# Further checks that `make test` runs after the cargo suite; the files in mk/ add to it.
TEST_TARGETS :=
include $(sort $(wildcard mk/*.mk))
# The browser tests drive Debian's Chromium with playwright-core (never a downloaded browser).
CHROMIUM := /usr/bin/chromium
E2E := crates/gateway/web/e2e

.PHONY: deps
deps: ## Install what building and running need (rustfmt, clippy, redis-server)
	@command -v $(CARGO) >/dev/null || { echo "cargo is required: install Rust from rustup.rs"; exit 1; }
	@$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy
	@$(call apt_install,command -v redis-server,redis-server)
	@command -v redis-server >/dev/null || { echo "redis-server is required (apt-get install redis-server)"; exit 1; }

.PHONY: test-deps
test-deps: deps ## Also install what the tests need (chromium, the browser-test npm packages)
	@$(call apt_install,[ -x $(CHROMIUM) ],chromium)
	@[ -x $(CHROMIUM) ] || { echo "$(CHROMIUM) is required for the browser tests (apt-get install chromium)"; exit 1; }
	@command -v node >/dev/null && command -v npm >/dev/null || { echo "node and npm are required (Node.js 20 or newer)"; exit 1; }
	@if [ ! -d $(E2E)/node_modules ] || [ $(E2E)/package-lock.json -nt $(E2E)/node_modules ]; then \
		echo "installing the browser test packages (npm ci --prefix $(E2E))"; \
		npm ci --prefix $(E2E) --no-audit --no-fund --loglevel=error && touch $(E2E)/node_modules; fi

.PHONY: build
build: deps ## Build the release binary (target/release/switchboard)
	$(CARGO) build --release --locked -p switchboard-gateway

# `make run`: the demo (--demo, development only) with room history, and the dashboard feeder.
PUBLIC_PORT = $(lastword $(subst :, ,$(LISTEN)))
ADMIN_PORT = $(lastword $(subst :, ,$(ADMIN_LISTEN)))
DEMO_HISTORY ?= room:*=100/3600
FEEDER = crates/gateway/web/feeder.mjs
FEEDER_INTERVAL_MS ?= 500
FEEDER_COUNT ?= 0

.PHONY: run
run: build ## Start one node with the demo on (http://localhost:8080/) and the dashboard feeder (dev secret and API key)
	@echo ""
	@echo "  Demo (open in a browser):  http://localhost:$(PUBLIC_PORT)/     chat /chat.html · dashboard /dashboard.html"
	@echo "  WebSocket:                 ws://localhost:$(PUBLIC_PORT)/ws"
	@echo "  Server API, metrics:       http://localhost:$(ADMIN_PORT)   API key: $(DEV_API_KEY)"
	@echo "  A token for websocat:      make token USER_ID=alice          Stop: Ctrl-C"
	@echo ""
	@feeder=; \
	if command -v node >/dev/null; then \
		node $(FEEDER) --api http://127.0.0.1:$(ADMIN_PORT) --key $(DEV_API_KEY) --interval-ms $(FEEDER_INTERVAL_MS) & feeder=$$!; \
	else \
		echo "node (Node.js >= 20) not found: the dashboard feeder is not started (make demo-feeder)"; \
	fi; \
	trap 'if [ -n "$$feeder" ]; then kill $$feeder 2>/dev/null; fi' EXIT; \
	$(DEV_ENV) ./target/release/switchboard serve --listen $(LISTEN) --admin-listen $(ADMIN_LISTEN) \
		--demo --history '$(DEMO_HISTORY)'

.PHONY: demo-feeder
demo-feeder: ## Publish a random walk to room:dashboard through a running node's server API (FEEDER_COUNT=0: forever)
	node $(FEEDER) --api http://127.0.0.1:$(ADMIN_PORT) --key $(DEV_API_KEY) --count $(FEEDER_COUNT) --interval-ms $(FEEDER_INTERVAL_MS)

# `make cluster`: one redis-server on REDIS_PORT (6390); `make cluster REDIS=cluster`: a Redis
# Cluster (deploy/redis-cluster.sh) of REDIS_PRIMARIES × (1 + REDIS_REPLICAS) nodes on
# REDIS_CLUSTER_PORT and up (7001-7006), the nodes on redis-cluster://127.0.0.1:7001?node=….
REDIS ?= single
REDIS_PORT ?= 6390
REDIS_CLUSTER_PORT ?= 7001
REDIS_PRIMARIES ?= 3
REDIS_REPLICAS ?= 1

.PHONY: cluster
cluster: build ## Start Redis and three nodes on loopback (public 8081-8083, internal 9091-9093); REDIS=cluster: a 6-node Redis Cluster on 7001-7006
	$(DEV_ENV) REDIS=$(REDIS) REDIS_PORT=$(REDIS_PORT) REDIS_CLUSTER_PORT=$(REDIS_CLUSTER_PORT) \
		REDIS_PRIMARIES=$(REDIS_PRIMARIES) REDIS_REPLICAS=$(REDIS_REPLICAS) \
		./deploy/local-cluster.sh ./target/release/switchboard

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
test: test-deps fmt-check clippy ## Format check, clippy, the JS client's unit tests, the whole test suite (browser tests included) and every check in TEST_TARGETS
	npm test --prefix crates/gateway/web
	$(CARGO) test --workspace --locked
	@for t in $(TEST_TARGETS); do echo "== make $$t"; $(MAKE) --no-print-directory $$t || exit 1; done

.PHONY: ci
ci: test ## Exactly what CI runs (.ci/run)
