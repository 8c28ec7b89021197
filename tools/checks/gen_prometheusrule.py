"""Generates k8s/base/prometheusrule.yaml from deploy/prometheus/alerts.yml, or checks it is current.

The PrometheusRule (Prometheus Operator CRD) carries exactly the groups of the plain rules file:
the `groups:` block is copied as text, indented under `spec:`, so the two cannot drift apart in
anything but this header. No namespace (the overlay sets it); the `release: prometheus` label is
what kube-prometheus-stack's default ruleSelector matches (set its ruleSelector otherwise).

    python3 -m tools.checks.gen_prometheusrule --write   # after editing alerts.yml
    .venv/bin/python -m tools.checks.gen_prometheusrule --check

--check fails (exit 1, with a diff) when the file differs from what --write would produce, and
also parses both files (PyYAML, from the .venv that `make venv` builds) to compare their groups
as data and to make sure the resource has no namespace.
"""

import argparse
import difflib
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE = os.path.join(ROOT, "deploy", "prometheus", "alerts.yml")
TARGET = os.path.join(ROOT, "k8s", "base", "prometheusrule.yaml")

HEADER = """\
# GENERATED from deploy/prometheus/alerts.yml by tools/checks/gen_prometheusrule.py: do not
# edit; change alerts.yml and run `python3 -m tools.checks.gen_prometheusrule --write`
# (`make check-observability` fails while the two differ).
# The Switchboard alerts for the Prometheus Operator. kube-prometheus-stack loads rules
# labelled `release: <helm release>` (here `prometheus`) unless
# ruleSelectorNilUsesHelmValues=false; change the label to your release's name.
# What each alert means and what to do: grafana/README.md.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: switchboard
  labels:
    app.kubernetes.io/name: switchboard
    app.kubernetes.io/component: gateway
    release: prometheus
spec:
"""


def render(source_text):
    """The PrometheusRule text for the rules file's text."""
    lines = source_text.splitlines()
    try:
        start = lines.index("groups:")
    except ValueError:
        raise SystemExit(f"{SOURCE}: no top-level `groups:` line") from None
    body = ["  " + line if line.strip() else "" for line in lines[start:]]
    return HEADER + "\n".join(body).rstrip() + "\n"


def check_as_data(source_text, target_text):
    """Both files parse, carry the same groups, and the resource is namespace-less."""
    try:
        import yaml
    except ImportError:
        raise SystemExit("--check needs PyYAML: run it with .venv/bin/python (make venv)") from None
    rules = yaml.safe_load(source_text)
    resource = yaml.safe_load(target_text)
    problems = []
    if resource.get("kind") != "PrometheusRule":
        problems.append("kind is not PrometheusRule")
    if "namespace" in resource.get("metadata", {}):
        problems.append("metadata.namespace is set (the overlays set it)")
    if resource.get("metadata", {}).get("labels", {}).get("release") is None:
        problems.append("no `release` label for the kube-prometheus-stack rule selector")
    if resource.get("spec", {}).get("groups") != rules.get("groups"):
        problems.append("spec.groups differs from the groups of alerts.yml")
    if not rules.get("groups"):
        problems.append("alerts.yml has no groups")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="regenerate the PrometheusRule")
    mode.add_argument("--check", action="store_true", help="fail when it is not current")
    args = parser.parse_args()
    with open(SOURCE) as f:
        source_text = f.read()
    wanted = render(source_text)
    if args.write:
        with open(TARGET, "w") as f:
            f.write(wanted)
        print(f"wrote {os.path.relpath(TARGET, ROOT)}")
        return 0
    try:
        with open(TARGET) as f:
            actual = f.read()
    except FileNotFoundError:
        actual = ""
    problems = []
    if actual != wanted:
        diff = difflib.unified_diff(
            actual.splitlines(), wanted.splitlines(),
            "k8s/base/prometheusrule.yaml", "generated from alerts.yml", lineterm="")
        print("\n".join(list(diff)[:60]))
        problems.append("k8s/base/prometheusrule.yaml is not what alerts.yml generates: "
                        "run python3 -m tools.checks.gen_prometheusrule --write")
    if actual:
        problems += check_as_data(source_text, actual)
    for p in problems:
        print(f"FAIL: {p}")
    if problems:
        return 1
    groups = source_text.count("\n  - name: ")
    rules = source_text.count("\n      - alert: ")
    print(f"ok: k8s/base/prometheusrule.yaml matches alerts.yml ({groups} groups, {rules} alerts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
