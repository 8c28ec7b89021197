# The server API's OpenAPI document (docs/openapi.json): validated with openapi-spec-validator
# and fuzzed with Schemathesis (tools/checks/api_fuzz.py) against a live node on the embedded
# backplane and one on Redis. The route table ↔ document test is a cargo test
# (api::routes::tests, in `cargo test`). `make api-fuzz` is the longer run before a release;
# API_FUZZ_URL + API_FUZZ_API_KEY point it at a running (staging) node instead.

# Test cases per operation and phase: `make test` (about half a minute) and `make api-fuzz`.
API_FUZZ_EXAMPLES ?= 60
API_FUZZ_LONG_EXAMPLES ?= 500
API_FUZZ_URL ?=
API_FUZZ_API_KEY ?=
API_FUZZ_SEED ?=
# The channel namespaces the fuzzer may use (tools/checks/api_fuzz_hooks.py); default user,room.
export API_FUZZ_NAMESPACES
API_FUZZ = $(VENV_BIN)/python -m tools.checks.api_fuzz --schemathesis $(VENV_BIN)/schemathesis \
	$(if $(API_FUZZ_SEED),--seed $(API_FUZZ_SEED))

.PHONY: check-openapi
check-openapi: deps venv ## Validate docs/openapi.json (OpenAPI 3.1) and fuzz the server API with Schemathesis on both backplanes (short)
	$(VENV_BIN)/openapi-spec-validator docs/openapi.json
	$(CARGO) build --locked -p switchboard-gateway
	$(API_FUZZ) --binary target/debug/switchboard --max-examples $(API_FUZZ_EXAMPLES)

.PHONY: api-fuzz
api-fuzz: venv ## Fuzz the server API for a few minutes (both backplanes); API_FUZZ_URL=http://host:9090 API_FUZZ_API_KEY=… for a staging node
	$(VENV_BIN)/openapi-spec-validator docs/openapi.json
ifeq ($(API_FUZZ_URL),)
	$(MAKE) --no-print-directory deps
	$(CARGO) build --locked -p switchboard-gateway
	$(API_FUZZ) --binary target/debug/switchboard --max-examples $(API_FUZZ_LONG_EXAMPLES)
else
	API_FUZZ_URL='$(API_FUZZ_URL)' API_FUZZ_API_KEY='$(API_FUZZ_API_KEY)' \
		$(API_FUZZ) --max-examples $(API_FUZZ_LONG_EXAMPLES)
endif

TEST_TARGETS += check-openapi
