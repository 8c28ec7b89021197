"""Shows that every check of check_deploy.py can fail (make validate-deploy-selftest).

    .venv/bin/python -m tools.validate.selftest

Copies the deployment files to a temp dir, checks that the copy passes, then breaks one field at
a time (MUTATIONS) and checks that check_deploy.py exits 1 with a FAIL line naming the expected
check. Prints one line per mutation and `N passed, M failed`.
"""

import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
COPY = ["README.md", "k8s", "grafana/provisioning", "grafana/dashboards", "deploy/Dockerfile",
        "deploy/docker-compose.yml", "deploy/nginx", "deploy/prometheus"]

# (what breaks, file, old text, new text, --only, text expected in a FAIL line). `k8s` checks
# the dev overlay (every base change shows there) for one Kubernetes version; `k8s:prod` prod.
MUTATIONS = [
    ("unknown field in the Deployment (strict schema)", "k8s/base/deployment.yaml",
     "imagePullPolicy: IfNotPresent", "imagePullPolicy: IfNotPresent\n          imagePullPolicyy: Always",
     "k8s", "kubernetes-validate --strict"),
    ("wrong type in the HPA", "k8s/base/hpa.yaml", "maxReplicas: 10", "maxReplicas: ten",
     "k8s", "kubernetes-validate --strict"),
    ("bad duration in the ServiceMonitor (CRD schema)", "k8s/base/servicemonitor.yaml",
     "interval: 15s", "interval: 15 seconds", "k8s", "CRD schemas"),
    ("overlay patch whose target does not exist", "k8s/overlays/prod/hpa-patch.yaml",
     "name: switchboard", "name: switchboard-hpa", "k8s:prod", "kustomize build"),
    ("grace period shorter than preStop + drain", "k8s/base/deployment.yaml",
     "terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 30",
     "k8s", "terminationGracePeriodSeconds"),
    ("ServiceMonitor selecting the public Service too", "k8s/base/servicemonitor.yaml",
     "      switchboard.io/port: internal\n", "", "k8s", "ServiceMonitor selects only"),
    ("misspelled setting in the ConfigMap", "k8s/base/kustomization.yaml",
     "SWITCHBOARD_LEASE_SECONDS=10", "SWITCHBOARD_LEASE_SECOND=10", "k8s", "documented setting"),
    ("setting value the gateway rejects (exit 64)", "k8s/base/kustomization.yaml",
     "SWITCHBOARD_HISTORY=room:*=100/3600", "SWITCHBOARD_HISTORY=room:*=100/an-hour", "k8s", "accepts its"),
    ("probe on the public port", "k8s/base/deployment.yaml",
     "path: /readyz\n              port: internal", "path: /readyz\n              port: public",
     "k8s", "readinessProbe"),
    ("adapter serving another metric name", "k8s/extras/prometheus-adapter-values.yaml",
     'as: "switchboard_connections"', 'as: "switchboard_conns"', "extras", "adapter"),
    ("unknown key in a compose service (compose-spec)", "deploy/docker-compose.yml",
     "  stop_grace_period: 20s", "  stop_grace_periods: 20s", "compose", "compose-spec"),
    ("compose stop_grace_period shorter than the drain", "deploy/docker-compose.yml",
     "stop_grace_period: 20s", "stop_grace_period: 5s", "compose", "stop_grace_period"),
    ("nginx syntax error", "deploy/nginx/nginx.conf",
     "proxy_read_timeout 3600s;", "proxy_read_timeout 3600 s;", "nginx", "nginx -t"),
    ("invalid Prometheus duration", "deploy/prometheus/prometheus.yml",
     "scrape_interval: 15s", "scrape_interval: 15x", "prometheus", "promtool"),
    ("Dockerfile running as root (hadolint DL3002)", "deploy/Dockerfile",
     "USER 65532:65532", "USER root", "docker", "hadolint"),
]


def copy_tree(dst):
    for rel in COPY:
        src, out = os.path.join(ROOT, rel), os.path.join(dst, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, out)


def check(root, only, fast=True):
    cmd = [sys.executable, "-m", "tools.validate.check_deploy", "--root", root,
           "--venv", os.path.join(ROOT, ".venv", "bin")]
    if fast:
        only, _, overlay = only.partition(":")
        cmd += ["--overlays", overlay or "dev", "--k8s-versions", "1.31.0"]
    p = subprocess.run(cmd + ["--only", only], capture_output=True, text=True, cwd=ROOT)
    return p.returncode, p.stdout + p.stderr


def main():
    passed = failed = 0
    hadolint = os.path.exists(os.path.join(ROOT, ".venv", "bin", "hadolint"))
    with tempfile.TemporaryDirectory(prefix="switchboard-selftest-") as tmp:
        base = os.path.join(tmp, "base")
        copy_tree(base)
        code, out = check(base, "k8s,extras,compose,prometheus,nginx,docker", fast=False)
        if code != 0:
            print("FAIL the unmodified copy does not pass:\n" + out)
            print("0 passed, 1 failed")
            return 1
        for i, (what, rel, old, new, only, expect) in enumerate(MUTATIONS):
            if only == "docker" and not hadolint:
                print(f"note {what}: hadolint not in .venv, not run")
                continue
            root = os.path.join(tmp, f"m{i}")
            shutil.copytree(base, root)
            path = os.path.join(root, rel)
            with open(path) as f:
                text = f.read()
            if old not in text:
                print(f"FAIL {what}: {rel} no longer contains {old!r}; update MUTATIONS")
                failed += 1
                continue
            with open(path, "w") as f:
                f.write(text.replace(old, new, 1))
            code, out = check(root, only)
            fails = [ln for ln in out.splitlines() if ln.startswith("FAIL") and expect in ln]
            if code == 1 and fails:
                passed += 1
                print(f"ok   {what}: caught ({fails[0][5:][:110]})")
            else:
                failed += 1
                print(f"FAIL {what}: not caught (exit {code})\n{out}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
