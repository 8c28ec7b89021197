# Benchmarks: W1–W5 against a local 3-node cluster, W1/W2 against the peers of loadtest/peers
# side by side; writes BENCHMARKS.md (raw results in target/bench/<timestamp>/, not committed).
BENCH_PY := python3 loadtest/bench/bench.py
BENCH_CMD = $(if $(filter-out 0,$(BENCH_QUICK)),BENCH_QUICK=$(BENCH_QUICK) )make bench

.PHONY: bench-build
bench-build: deps ## Build the release gateway and load generator for the benchmarks
	$(CARGO) build --release --locked -p switchboard-gateway -p switchboard-loadgen

.PHONY: bench
bench: bench-build ## Run the benchmarks W1–W5 (and peers side by side) and write BENCHMARKS.md (BENCH_QUICK=1: ≈ 3 min)
	-@$(MAKE) --no-print-directory -k peers || echo "bench: make peers failed; the peers that are not installed are skipped"
	$(BENCH_PY) $(if $(filter-out 0,$(BENCH_QUICK)),--quick) --command '$(BENCH_CMD)'

.PHONY: bench-quick
bench-quick: ## The benchmarks with small sizes (≈ 3 min, for development) → BENCHMARKS.md
	@$(MAKE) --no-print-directory bench BENCH_QUICK=1

.PHONY: bench-selftest
bench-selftest: ## Unit tests of the benchmark runner's analysis and report (no load, < 1 s)
	python3 loadtest/bench/test_bench.py

TEST_TARGETS += bench-selftest
