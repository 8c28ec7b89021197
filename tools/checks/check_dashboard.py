"""Structural checks of the Grafana dashboard and its provisioning (standard library only).

    python3 -m tools.checks.check_dashboard [grafana/dashboards/switchboard.json]

No JSON Schema of Grafana dashboards is published on npm or PyPI (Grafana's schema is CUE;
@grafana/schema ships TypeScript types, grafana-foundation-sdk Python builders), so this
script checks what Grafana needs and what the repository promises:

- the dashboard: uid, title, schemaVersion, time; a `datasource` variable (type prometheus,
  default uid `prometheus`), `job` and `node` query variables that use it;
- every panel, rows' nested panels included: a unique integer id, a unique title, a gridPos
  inside the 24-column grid that overlaps no other panel; every non-row panel: a description,
  the datasource `${datasource}`, at least one target, each with a unique refId, the same
  datasource and a non-empty expression;
- every expression: balanced brackets, only defined variables, every selector filtered by
  job=~"$job" and node=~"$node", only metrics the gateway defines (crates/gateway/src/metrics.rs
  constants, their histogram series, and the process_* metrics it exports);
- grafana/README.md names every row and panel;
- the provisioning: datasource uid `prometheus` at http://prometheus:9090, and the dashboard
  provider reads the directory that deploy/docker-compose.yml mounts grafana/dashboards at.

Exit status 1 with one line per problem.
"""

import json
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the tree
from . import promql  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DASHBOARD = os.path.join(ROOT, "grafana", "dashboards", "switchboard.json")
README = os.path.join(ROOT, "grafana", "README.md")
DATASOURCES = os.path.join(ROOT, "grafana", "provisioning", "datasources", "prometheus.yml")
PROVIDERS = os.path.join(ROOT, "grafana", "provisioning", "dashboards", "switchboard.yml")
COMPOSE = os.path.join(ROOT, "deploy", "docker-compose.yml")
METRICS_RS = os.path.join(ROOT, "crates", "gateway", "src", "metrics.rs")

PANEL_TYPES = {"row", "timeseries", "stat", "heatmap", "gauge", "bargauge", "table", "text", "state-timeline"}
DS = {"type": "prometheus", "uid": "${datasource}"}
BUILTINS = {"__rate_interval", "__interval", "__range", "__interval_ms", "__range_s"}
# What metrics-process exports (crates/gateway/src/metrics.rs installs it).
PROCESS_METRICS = {
    "process_cpu_seconds_total", "process_open_fds", "process_max_fds",
    "process_virtual_memory_bytes", "process_virtual_memory_max_bytes",
    "process_resident_memory_bytes", "process_start_time_seconds", "process_threads",
}


def known_metrics():
    with open(METRICS_RS) as f:
        names = set(re.findall(r'pub const [A-Z_]+: &str = "(switchboard_[a-z0-9_]+)"', f.read()))
    histo = {n + s for n in names for s in ("_bucket", "_count", "_sum")}
    return names | histo | PROCESS_METRICS


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def check_variables(d, problems):
    variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problems.append("no `datasource` variable of type datasource with query `prometheus`")
    elif (ds.get("current") or {}).get("value") != "prometheus":
        problems.append("the `datasource` variable does not default to uid `prometheus`")
    for name in ("job", "node"):
        v = variables.get(name)
        if not v or v.get("type") != "query":
            problems.append(f"no `{name}` query variable")
            continue
        if v.get("datasource") != DS:
            problems.append(f"variable `{name}` does not use ${{datasource}}")
        query = v.get("definition") or ""
        if not query.startswith("label_values("):
            problems.append(f"variable `{name}`: expected a label_values() query, got {query!r}")
    node = variables.get("node") or {}
    if not (node.get("multi") and node.get("includeAll")):
        problems.append("variable `node` must allow several nodes and All")
    return set(variables)


def check_grid(panels, problems):
    cells = {}
    for p in panels:
        g = p.get("gridPos")
        if not isinstance(g, dict) or not all(isinstance(g.get(k), int) for k in "hwxy"):
            problems.append(f"panel {p.get('id')} {p.get('title')!r}: gridPos needs integer h, w, x, y")
            continue
        if g["w"] < 1 or g["h"] < 1 or g["x"] < 0 or g["y"] < 0 or g["x"] + g["w"] > 24:
            problems.append(f"panel {p.get('id')} {p.get('title')!r}: gridPos {g} is outside the 24-column grid")
            continue
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                other = cells.setdefault((x, y), p.get("id"))
                if other != p.get("id"):
                    problems.append(f"panel {p.get('id')} {p.get('title')!r} overlaps panel {other} at x={x} y={y}")
                    return


def check_expr(where, expr, variables, metrics, problems):
    if not promql.balanced(expr):
        problems.append(f"{where}: unbalanced brackets in {expr}")
    for m in re.finditer(r"\$\{(\w+)\}|\$(\w+)", expr):
        name = m.group(1) or m.group(2)
        if name not in variables and name not in BUILTINS:
            problems.append(f"{where}: undefined variable ${name}")
    for name in promql.metric_names(expr) - metrics:
        problems.append(f"{where}: {name} is not a metric the gateway exports")
    for name in promql.bare_names(expr):
        problems.append(f"{where}: {name} has no {{job, node}} selector")
    try:
        for name, matchers in promql.selectors(expr):
            for label in ("job", "node"):
                if matchers.get(label) != ("=~", f"${label}"):
                    problems.append(f'{where}: {name} is not filtered by {label}=~"${label}"')
    except ValueError as e:
        problems.append(f"{where}: {e}")


def check_panels(d, variables, problems):
    metrics = known_metrics()
    panels = list(all_panels(d.get("panels", [])))
    if not panels:
        problems.append("the dashboard has no panels")
    ids, titles = set(), set()
    for p in panels:
        pid, title = p.get("id"), p.get("title")
        where = f"panel {pid} {title!r}"
        if not isinstance(pid, int) or pid in ids:
            problems.append(f"{where}: id must be a unique integer")
        ids.add(pid)
        if not title or title in titles:
            problems.append(f"{where}: title must be unique and not empty")
        titles.add(title)
        if p.get("type") not in PANEL_TYPES:
            problems.append(f"{where}: unknown panel type {p.get('type')!r}")
        if p.get("type") == "row":
            continue
        if not p.get("description"):
            problems.append(f"{where}: no description")
        if p.get("datasource") != DS:
            problems.append(f"{where}: datasource must be {DS}")
        targets = p.get("targets") or []
        if not targets:
            problems.append(f"{where}: no targets")
        refs = set()
        for t in targets:
            if t.get("refId") in refs or not t.get("refId"):
                problems.append(f"{where}: refId {t.get('refId')!r} missing or repeated")
            refs.add(t.get("refId"))
            if t.get("datasource") != DS:
                problems.append(f"{where} target {t.get('refId')}: datasource must be {DS}")
            expr = t.get("expr") or ""
            if not expr.strip():
                problems.append(f"{where} target {t.get('refId')}: empty expression")
                continue
            check_expr(f"{where} target {t.get('refId')}", expr, variables, metrics, problems)
        if p.get("type") == "heatmap" and any(t.get("format") != "heatmap" for t in targets):
            problems.append(f"{where}: heatmap targets need format `heatmap`")
    check_grid([p for p in d.get("panels", [])], problems)
    return titles


def check_readme(titles, problems):
    try:
        with open(README) as f:
            text = f.read()
    except FileNotFoundError:
        problems.append("grafana/README.md is missing")
        return
    for t in sorted(titles):
        if f"**{t}**" not in text:
            problems.append(f"grafana/README.md does not describe the panel or row **{t}**")


def check_provisioning(problems):
    def read(path):
        try:
            with open(path) as f:
                return f.read()
        except FileNotFoundError:
            problems.append(f"{os.path.relpath(path, ROOT)} is missing")
            return ""
    ds = read(DATASOURCES)
    for line in ("uid: prometheus", "type: prometheus", "url: http://prometheus:9090"):
        if not re.search(rf"^\s*{re.escape(line)}\s*$", ds, re.M):
            problems.append(f"datasource provisioning lacks `{line}`")
    providers = read(PROVIDERS)
    m = re.search(r"^\s*path:\s*(\S+)\s*$", providers, re.M)
    if not m:
        problems.append("dashboard provisioning has no `path:`")
        return
    compose = read(COMPOSE)
    mount = f"../grafana/dashboards:{m.group(1)}"
    if compose and not re.search(rf"{re.escape(mount)}(:ro|:rw)?[\s\"']*$", compose, re.M):
        problems.append(f"deploy/docker-compose.yml does not mount `{mount}` (the provider's path)")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else DASHBOARD
    problems = []
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        print(f"FAIL: {path}: {e}")
        return 1
    if d.get("uid") != "switchboard" or not d.get("title"):
        problems.append("the dashboard needs uid `switchboard` and a title")
    if not isinstance(d.get("schemaVersion"), int) or not 36 <= d["schemaVersion"] <= 41:
        problems.append(f"schemaVersion {d.get('schemaVersion')!r}: expected 36…41 (Grafana 9–11)")
    if not isinstance(d.get("time"), dict):
        problems.append("no default time range")
    variables = check_variables(d, problems)
    titles = check_panels(d, variables, problems)
    check_readme(titles, problems)
    check_provisioning(problems)
    for p in problems:
        print(f"FAIL: {p}")
    if problems:
        return 1
    n = sum(1 for p in all_panels(d["panels"]) if p.get("type") != "row")
    exprs = sum(len(p.get("targets", [])) for p in all_panels(d["panels"]))
    print(f"ok: {os.path.relpath(path, ROOT)}: {n} panels, {exprs} queries, provisioning consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
