# Observability: the alert rules (deploy/prometheus/), the PrometheusRule generated from them
# (k8s/base/prometheusrule.yaml), the Grafana dashboard (grafana/) and a real Prometheus
# scraping a local 3-node cluster, on one Redis and on a Redis Cluster. The scripts are in
# tools/checks/.

.PHONY: prometheus-deps
prometheus-deps: ## Install prometheus and promtool (Debian package) when missing
	@$(call apt_install,command -v prometheus && command -v promtool,prometheus,--no-install-recommends)
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { echo "prometheus and promtool are required (apt-get install prometheus)"; exit 1; }

.PHONY: prometheusrule
prometheusrule: ## Regenerate k8s/base/prometheusrule.yaml from deploy/prometheus/alerts.yml
	python3 -m tools.checks.gen_prometheusrule --write

.PHONY: check-observability
check-observability: deps prometheus-deps venv ## Alert rules (promtool check + unit tests), PrometheusRule in sync, dashboard checks, a real Prometheus scraping 3 nodes on one Redis and on a Redis Cluster
	promtool check rules deploy/prometheus/alerts.yml
	promtool test rules deploy/prometheus/alerts.test.yml
	$(VENV_BIN)/python -m tools.checks.gen_prometheusrule --check
	python3 -m tools.checks.check_dashboard
	$(CARGO) build --locked -p switchboard-gateway
	python3 -m tools.checks.scrape_test --binary target/debug/switchboard

TEST_TARGETS += check-observability
