# Soak (tools/soak/, python3 -m tools.soak): a 3-node cluster on one Redis for SOAK_SECONDS under churning
# connections, 1:1 and room traffic, with one Redis SIGKILL + restart and one node SIGKILL +
# restart in the middle. Fails on any acknowledged user-channel message lost, a silent gap,
# a duplicate, or RSS / open fds of a node growing more than 5 % between the idle
# checkpoints after the warm-up and at the end. Not part of `make test` (about 11 minutes).
# Report: target/artifacts/soak/soak.md (+ soak.json, logs/); RELIABILITY.md explains it.
#
#   SOAK_SECONDS=120     a short try (default 600)
#   SOAK_REDIS=empty     Redis without persistence (gaps must be answered by resync /
#                        recovered:false) instead of AOF appendfsync always (keep: strict)
#   SOAK_ARGS='--users 200'   any other python3 -m tools.soak flag
SOAK_SECONDS ?= 600
SOAK_REDIS ?= keep
SOAK_ARGS ?=
SOAK_CMD = make soak$(if $(filter-out 600,$(SOAK_SECONDS)), SOAK_SECONDS=$(SOAK_SECONDS))$(if $(filter-out keep,$(SOAK_REDIS)), SOAK_REDIS=$(SOAK_REDIS))$(if $(SOAK_ARGS), SOAK_ARGS='$(SOAK_ARGS)')

.PHONY: soak
soak: deps ## Soak: 3 nodes, churning connections, a Redis restart and a node SIGKILL; 0 lost, RSS/fds flat (SOAK_SECONDS=600, ≈ 11 min)
	$(CARGO) build --release --locked -p switchboard-gateway
	python3 -m tools.soak --binary target/release/switchboard --seconds $(SOAK_SECONDS) \
		--redis-restart $(SOAK_REDIS) --out target/artifacts/soak --command "$(SOAK_CMD)" $(SOAK_ARGS)

.PHONY: soak-selftest
soak-selftest: ## Unit tests of the soak's accounting, flatness verdict and report (no cluster, < 1 s)
	PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s tools/soak -t .

# make test runs these through test-tools (mk/tools.mk).
