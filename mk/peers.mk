# The peer servers Switchboard is benchmarked against (loadtest/peers/README.md):
# Socket.IO 4 + redis adapter, plain ws + ioredis (npm, into loadtest/peers/node_modules) and
# Sockudo (cargo install into $(SOCKUDO_ROOT), outside the repository, reused by later runs).
PEERS_DIR := loadtest/peers
SOCKUDO_ROOT ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/switchboard-peers/sockudo
export SOCKUDO_ROOT

.PHONY: peers-node
peers-node: ## Install the Node peers (Socket.IO + redis adapter, ws + ioredis) with npm ci
	@$(call apt_install,command -v node && command -v npm,nodejs npm)
	@$(call apt_install,command -v redis-server,redis-server)
	@if [ ! -d $(PEERS_DIR)/node_modules ] || [ $(PEERS_DIR)/package-lock.json -nt $(PEERS_DIR)/node_modules ]; then \
		echo "installing the peer servers (npm ci --prefix $(PEERS_DIR))"; \
		npm ci --prefix $(PEERS_DIR) --no-audit --no-fund --loglevel=error && touch $(PEERS_DIR)/node_modules; fi

.PHONY: peers-sockudo
peers-sockudo: ## Build Sockudo 5.2.0 (--features redis) into ~/.cache/switchboard-peers/sockudo unless it is there
	@$(call apt_install,command -v cmake && command -v protoc,cmake protobuf-compiler)
	CARGO=$(CARGO) $(PEERS_DIR)/build-sockudo.sh

.PHONY: peers
peers: peers-node peers-sockudo ## Install the peer servers for the side-by-side benchmark: npm ci + build Sockudo into the cache

.PHONY: peers-check
peers-check: peers ## Check each peer end to end (3 nodes, one Redis: a user on node A gets what node B's API published)
	node $(PEERS_DIR)/check-peers.mjs socketio ws sockudo
