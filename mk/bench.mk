# Benchmarks: W1–W6 against local 3-node clusters, the hot-path workloads also against a
# baseline binary (before → after), perf profiles of both, W1/W2 against the peers of
# loadtest/peers side by side; writes BENCHMARKS.md (raw results in target/bench/<timestamp>/).
#
#   BENCH_QUICK=1       smaller sizes (≈ 6 min instead of ≈ 20–30), for development; building
#                       a BENCH_BASELINE revision adds ≈ 5 min once
#   BENCH_BASELINE=X    the "before" gateway: a binary path, a git revision (built once with
#                       `git archive` into target/bench-baseline/<rev>/ by
#                       tools/bench/build-baseline.sh, no worktree), or none.
#                       Default: 5fa1693, the revision before the hot-path and Redis Cluster work.
#   BENCH_PEERS=a,b     peers to run (socketio,ws,sockudo; none). Sockudo runs when its cached
#                       build exists (`make peers-sockudo` builds it; make bench does not).
#   BENCH_ONLY=W2,W6    only these workloads (python3 -m tools.bench --only)
BENCH_PY := python3 -m tools.bench
BENCH_BASELINE ?= 5fa1693
BENCH_ONLY ?=
BENCH_CMD = $(if $(filter-out 0,$(BENCH_QUICK)),BENCH_QUICK=$(BENCH_QUICK) )make bench$(if $(filter-out 5fa1693,$(BENCH_BASELINE)), BENCH_BASELINE=$(BENCH_BASELINE))$(if $(BENCH_ONLY), BENCH_ONLY=$(BENCH_ONLY))

.PHONY: bench-build
bench-build: deps ## Build the release gateway and load generator for the benchmarks
	nice -n 10 $(CARGO) build --release --locked -p switchboard-gateway -p switchboard-loadgen

.PHONY: bench-baseline
bench-baseline: ## Build the baseline gateway of BENCH_BASELINE (a git revision) without a worktree; prints its path
	@case "$(BENCH_BASELINE)" in none|*/*) echo "BENCH_BASELINE=$(BENCH_BASELINE) is not a revision";; \
	*) CARGO=$(CARGO) tools/bench/build-baseline.sh $(BENCH_BASELINE);; esac

.PHONY: bench
bench: bench-build ## Run the benchmarks W1–W6 before → after (BENCH_BASELINE), peers side by side, profiles; write BENCHMARKS.md (BENCH_QUICK=1: ≈ 6 min)
	-@$(MAKE) --no-print-directory peers-node || echo "bench: make peers-node failed; the Node peers are skipped"
	$(BENCH_PY) $(if $(filter-out 0,$(BENCH_QUICK)),--quick) --baseline '$(BENCH_BASELINE)' \
		$(if $(BENCH_ONLY),--only '$(BENCH_ONLY)') --command '$(BENCH_CMD)'

.PHONY: bench-quick
bench-quick: ## The benchmarks with small sizes (≈ 6 min, for development) → BENCHMARKS.md
	@$(MAKE) --no-print-directory bench BENCH_QUICK=1

.PHONY: bench-selftest
bench-selftest: ## Unit tests of the benchmark runner's analysis and report (no load, < 1 s)
	PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s tools/bench -t .

# make test runs these through test-tools (mk/tools.mk).
