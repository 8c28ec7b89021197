"""What the scrape checks share (standard library only): the check counter, HTTP, a real
Prometheus scraping a tools/cluster.py cluster, and the checks of the dashboard's queries
and of the metrics the dashboard and the alerts read. Used by scrape_test.py and
scrape_cluster.py.
"""

import json
import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the tree
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
from . import promql  # noqa: E402
from ..cluster import DEV_API_KEY  # noqa: E402
from ..proc import free_port  # noqa: E402

ALERTS = os.path.join(ROOT, "deploy", "prometheus", "alerts.yml")
DASHBOARD = os.path.join(ROOT, "grafana", "dashboards", "switchboard.json")
RESULTS = {"passed": 0, "failed": 0, "known": 0}


def check(ok, what, detail=""):
    RESULTS["passed" if ok else "failed"] += 1
    print(f"{'ok  ' if ok else 'FAIL'} {what}" + (f": {detail}" if detail and not ok else ""),
          flush=True)
    return ok


def known_issue(ok, what, issue, detail=""):
    """A check that fails because of a known, reported defect: XFAIL (not a failure) while it
    fails, XPASS once it holds (then make it a plain check())."""
    if ok:
        RESULTS["passed"] += 1
        print(f"XPASS {what} (known issue fixed? make it a plain check: {issue})", flush=True)
    else:
        RESULTS["known"] += 1
        print(f"XFAIL {what}: {detail}\n      known issue: {issue}", flush=True)
    return ok


def http(method, url, body=None, key=DEV_API_KEY, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Prometheus:
    def __init__(self, binary, cluster, workdir):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        targets = "\n".join(
            f'      - targets: ["{n.internal}"]\n        labels: {{node: "{n.node_id}"}}'
            for n in cluster.nodes)
        config = os.path.join(workdir, "prometheus.yml")
        with open(config, "w") as f:
            f.write(f"global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    f"rule_files:\n  - {ALERTS}\n"
                    f"scrape_configs:\n  - job_name: switchboard\n    static_configs:\n{targets}\n")
        self.log = open(os.path.join(workdir, "prometheus.log"), "wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir}/data",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                if http("GET", f"{self.url}/-/ready", key=None, timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prometheus did not start; see {workdir}/prometheus.log")
            time.sleep(0.2)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.log.close()

    def api(self, path, **params):
        qs = urllib.parse.urlencode(params, doseq=True)
        status, body = http("GET", f"{self.url}/api/v1/{path}?{qs}", key=None)
        doc = json.loads(body)
        if doc.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {doc.get('error')}")
        return doc["data"]

    def query(self, expr):
        """[(labels, value)] of an instant query."""
        return [(r["metric"], float(r["value"][1])) for r in self.api("query", query=expr)["result"]]

    def series(self, start, end):
        """Every series of the job with a sample between start and end."""
        rows = self.api("series", **{"match[]": '{job="switchboard"}', "start": start, "end": end})
        return {tuple(sorted(r.items())) for r in rows}

    def current(self):
        """The series the last scrape of every node returned (an instant query)."""
        # ALERTS and ALERTS_FOR_STATE are the rules' output, not what the nodes export.
        rows = self.api("query", query='{job="switchboard", __name__!~"ALERTS.*"}')["result"]
        return {tuple(sorted(r["metric"].items())) for r in rows}

    def rules(self):
        """Every alert rule, once each has been evaluated at least once."""
        self.wait("every rule evaluated", lambda: all(
            not r["lastEvaluation"].startswith("0001") for g in self.api("rules")["groups"] for r in g["rules"]))
        return [r for g in self.api("rules")["groups"] for r in g["rules"]]

    def alerts(self, name, state=None):
        """The active alerts called `name` (pending or firing, or only `state`)."""
        return [a for a in self.api("alerts")["alerts"] if a["labels"]["alertname"] == name
                and (state is None or a["state"] == state)]

    def wait(self, what, predicate, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return True
            except RuntimeError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"timed out waiting for {what}")


def exported_names(node):
    status, body = http("GET", f"http://{node.internal}/metrics", key=None)
    names = set()
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            names.add(line.split("{", 1)[0].split(" ", 1)[0])
    return names


def dashboard_queries():
    with open(DASHBOARD) as f:
        d = json.load(f)
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                out.append((f"{p['title']} [{t['refId']}]", t["expr"]))
            walk(p.get("panels", []))
    walk(d["panels"])
    variables = [v.get("definition", "") for v in d["templating"]["list"] if v["type"] == "query"]
    return out, variables


def check_metrics_exist(cluster, prom, queries, variables, rules, label=""):
    used = set()
    for _, expr in queries:
        used |= promql.metric_names(expr)
    for q in variables:
        used |= promql.metric_names(q[len("label_values("):].rsplit(",", 1)[0])
    for r in rules:
        used |= promql.metric_names(r["query"])
    for node in cluster.nodes:
        missing = sorted(used - {"up"} - exported_names(node))
        check(not missing, f"{label}{node.node_id} exports all {len(used - {'up'})} metrics the "
              "dashboard and alerts read", f"missing {missing}")
    up = prom.api("query", query='up{job="switchboard"} == 1')
    check(len(up["result"]) == len(cluster.nodes), f"{label}Prometheus has up=1 for the "
          f"{len(cluster.nodes)} nodes", f"{len(up['result'])} series")


def check_dashboard_queries(cluster, prom, queries, variables, start, end, label=""):
    jobs = prom.api("label/job/values", **{"match[]": "switchboard_connections"})
    check("switchboard" in jobs, f"{label}variable job: label_values finds job=switchboard", f"{jobs}")
    nodes = prom.api("label/node/values", **{"match[]": 'switchboard_connections{job=~"switchboard"}'})
    check(sorted(nodes) == sorted(n.node_id for n in cluster.nodes),
          f"{label}variable node: label_values finds the {len(cluster.nodes)} nodes", f"{nodes}")
    for setting in ({"node": ".*"}, {"node": cluster.nodes[1].node_id}):
        values = {"job": "switchboard", "__rate_interval": "4s", "__interval": "1s", **setting}
        empty = []
        for title, expr in queries:
            q = promql.substitute(expr, values)
            data = prom.api("query_range", query=q, start=start, end=end, step=1)
            finite = [v for s in data["result"] for _, v in s["values"] if math.isfinite(float(v))]
            if not finite:
                empty.append(title)
        check(not empty, f"{label}all {len(queries)} dashboard queries return data with "
              f"node={setting['node']}", f"no data: {empty}")


def check_rules_healthy(rules, label=""):
    bad = [f"{r['name']}: {r['health']} {r.get('lastError', '')}" for r in rules
           if r["health"] != "ok" or r.get("lastError")]
    check(len(rules) > 0 and not bad, f"{label}all {len(rules)} alert rules healthy", f"{bad}")


def firing(rules, except_=()):
    return [f"{r['name']} ({a['labels'].get('node')})" for r in rules for a in r.get("alerts", [])
            if a["state"] == "firing" and r["name"] not in except_]
