"""The Redis examples of the Kubernetes docs work (make validate-deploy runs it).

    .venv/bin/python -m tools.checks.k8s_redis_examples

- Every Redis URL example is accepted by the gateway: the `SWITCHBOARD_REDIS_URL=` lines of
  k8s/overlays/prod/secrets.example.env, commented out or not, and the backquoted URLs of
  k8s/README.md (those without placeholders such as `[…]` or `…`). Each runs through
  `switchboard serve` as tools/validate/settings_check.py does it (hosts rewritten to a closed
  loopback port: exit 64 = rejected, anything else = accepted). The gateway reads a
  `tlsCaFile=` while parsing the URL, so that path is pointed at a throwaway CA made with
  openssl for the run.
- The NetworkPolicy patch of k8s/README.md ("Redis Cluster"), added to a copy of the prod
  overlay, renders with kustomize, passes kubernetes-validate --strict and adds its port range
  to the egress of the gateway's NetworkPolicy.

Prints `ok …` / `FAIL …` lines and `N passed, M failed`; exit 1 on any failure.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

sys.dont_write_bytecode = True  # no __pycache__ in the tree
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
from ..validate import check_deploy  # noqa: E402
from ..validate import settings_check  # noqa: E402

README = os.path.join(ROOT, "k8s", "README.md")
EXAMPLE_ENV = os.path.join(ROOT, "k8s", "overlays", "prod", "secrets.example.env")
URL = re.compile(r"(?:redis|rediss)(?:\+sentinel|-sentinel|-cluster)?://\S+")
PATCH_MARK = "# k8s/overlays/prod/kustomization.yaml"


def example_urls():
    """[(where, url)] of every concrete Redis URL in the docs."""
    out = []
    with open(EXAMPLE_ENV) as f:
        for n, line in enumerate(f, 1):
            m = re.match(r"#?\s*SWITCHBOARD_REDIS_URL=(\S+)\s*$", line)
            if m:
                out.append((f"secrets.example.env:{n}", m.group(1)))
    with open(README) as f:
        for n, line in enumerate(f, 1):
            for quoted in re.findall(r"`([^`]+)`", line):
                if URL.fullmatch(quoted) and not re.search(r"[\[\]…<>]", quoted):
                    out.append((f"k8s/README.md:{n}", quoted))
    return out


def test_ca(workdir):
    """A self-signed CA certificate (PEM) for the URLs that name a tlsCaFile."""
    path = os.path.join(workdir, "ca.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=switchboard-test-ca", "-keyout", os.path.join(workdir, "ca.key"),
                    "-out", path], check=True, capture_output=True)
    return path


def check_urls(rep, binary, workdir):
    urls = example_urls()
    rep.add(len(urls) >= 6, f"found {len(urls)} Redis URL examples in the k8s docs")
    if not binary:
        print("note no target/*/switchboard built: the URL examples are not run through the gateway")
        return
    ca = test_ca(workdir)
    for where, url in urls:
        url = re.sub(r"tlsCaFile=[^&]*", f"tlsCaFile={ca}", url)
        ok, detail = settings_check.run_serve(binary, {
            "SWITCHBOARD_REDIS_URL": url,
            "SWITCHBOARD_JWT_SECRET": "example-check-0123456789abcdef0123456789"})
        rep.add(ok, f"{where}: the gateway accepts {url.split('://')[0]}://… (no exit 64)", "" if ok else detail)


def readme_patch():
    """The `patches:` list of the README's NetworkPolicy example."""
    with open(README) as f:
        text = f.read()
    m = re.search(r"```yaml\n" + re.escape(PATCH_MARK) + r"\n(.*?)```", text, re.S)
    if not m:
        return None
    return yaml.safe_load(m.group(1)).get("patches")


def check_patch(rep, venv, workdir):
    patches = readme_patch()
    if not rep.add(bool(patches), "k8s/README.md has the NetworkPolicy patch example"):
        return
    copy = os.path.join(workdir, "k8s")
    shutil.copytree(os.path.join(ROOT, "k8s"), copy)
    kpath = os.path.join(copy, "overlays", "prod", "kustomization.yaml")
    with open(kpath) as f:
        k = yaml.safe_load(f)
    k["patches"] = k.get("patches", []) + patches
    with open(kpath, "w") as f:
        yaml.safe_dump(k, f, sort_keys=False)
    code, out = check_deploy.run([check_deploy.KUSTOMIZE, "build", os.path.dirname(kpath)])
    if not rep.add(code == 0, "prod + the README's NetworkPolicy patch renders (kustomize build)", out[-2000:]):
        return
    objs = [o for o in yaml.safe_load_all(out) if o]
    nps = [o for o in objs if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "switchboard"]
    egress = [p for np in nps for r in np["spec"].get("egress", []) for p in r.get("ports", [])]
    added = [p for p in egress if p.get("endPort")]
    rep.add(len(nps) == 1 and added and all(p["port"] < p["endPort"] for p in added),
            f"the patched NetworkPolicy allows egress to the port range {added}")
    core = [o for o in objs if not o["apiVersion"].startswith(check_deploy.CRD_API)]
    check_deploy.kubernetes_validate(rep, venv, core, "prod+networkpolicy-example", workdir)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", default=os.path.join(ROOT, ".venv", "bin"))
    a = ap.parse_args()
    rep = check_deploy.Report()
    workdir = tempfile.mkdtemp(prefix="switchboard-k8s-examples-")
    try:
        check_urls(rep, check_deploy.BINARY, workdir)
        check_patch(rep, a.venv, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{rep.passed} passed, {rep.failed} failed")
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
