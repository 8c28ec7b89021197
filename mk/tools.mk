# The Python tooling (tools/: checks, deploy validation, rolling restart, benchmarks, soak,
# the local cluster and peer launchers; every entry point is `python3 -m tools.<module>`)
# and its own unit tests: every tools/**/test_*.py — the benchmark runner's analysis and
# report, the soak's accounting and flatness verdict, the rolling-restart analysis, the
# shared process and /proc helpers. No cluster, no load, about a second.
TOOLS_TEST := PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s tools -t .

.PHONY: test-tools
test-tools: ## Unit tests of the Python tooling in tools/ (bench, soak, rolling, shared helpers; < 2 s)
	$(TOOLS_TEST)

TEST_TARGETS += test-tools
