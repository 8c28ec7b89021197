# WebSocket conformance: the Autobahn TestSuite cases, run by kosoku (PyPI, pinned in
# requirements-dev.txt), against the development-only echo of a node (--dev-echo: GET /echo,
# a connection of the production stack with an echo in place of the session). Fails on any
# FAILED case. Reports in target/autobahn/ (default/ and large/index.html, summary.json);
# which cases run, on which limits, and why 12.*/13.* do not: tools/checks/autobahn.py and
# the README's "WebSocket conformance (Autobahn)".
AUTOBAHN_OUT := target/autobahn

.PHONY: check-autobahn
check-autobahn: deps venv ## Autobahn TestSuite (kosoku) against the --dev-echo endpoint: every applicable case, 0 FAILED (≈ 15 s); report in target/autobahn/
	$(CARGO) build --locked -p switchboard-gateway
	python3 -m tools.checks.autobahn --binary target/debug/switchboard --kosoku $(VENV_BIN)/kosoku --out $(AUTOBAHN_OUT)

TEST_TARGETS += check-autobahn
