# The peer servers Switchboard is benchmarked against (loadtest/peers/README.md):
# Socket.IO 4 + redis adapter, plain ws + ioredis (npm, into loadtest/peers/node_modules) and
# Sockudo (cargo install into $(SOCKUDO_ROOT), outside the repository, reused by later runs).
PEERS_DIR := loadtest/peers
SOCKUDO_ROOT ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/switchboard-peers/sockudo
export SOCKUDO_ROOT

.PHONY: peers-node
peers-node: ## Install the Node peers (Socket.IO + redis adapter, ws + ioredis) with npm ci
	@command -v node >/dev/null && command -v npm >/dev/null || { \
		echo "installing nodejs and npm (apt-get)"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
	@command -v redis-server >/dev/null || { \
		echo "installing redis-server (apt-get)"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@if [ ! -d $(PEERS_DIR)/node_modules ] || [ $(PEERS_DIR)/package-lock.json -nt $(PEERS_DIR)/node_modules ]; then \
		echo "installing the peer servers (npm ci --prefix $(PEERS_DIR))"; \
		npm ci --prefix $(PEERS_DIR) --no-audit --no-fund --loglevel=error && touch $(PEERS_DIR)/node_modules; fi

.PHONY: peers-sockudo
peers-sockudo: ## Build Sockudo 5.2.0 (--features redis) into ~/.cache/switchboard-peers/sockudo unless it is there
	@command -v cmake >/dev/null && command -v protoc >/dev/null || { \
		echo "installing cmake and protobuf-compiler (apt-get)"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake protobuf-compiler >/dev/null; }
	CARGO=$(CARGO) $(PEERS_DIR)/build-sockudo.sh

.PHONY: peers
peers: peers-node peers-sockudo ## Install the peer servers for the side-by-side benchmark: npm ci + build Sockudo into the cache

.PHONY: peers-check
peers-check: peers ## Check each peer end to end (3 nodes, one Redis: a user on node A gets what node B's API published)
	node $(PEERS_DIR)/check-peers.mjs socketio ws sockudo
