#!/usr/bin/env python3
"""A real Prometheus scrapes a local 3-node cluster; the dashboard and the alerts are checked
against what it stores (standard library only; needs `prometheus` and `redis-server`).

    python3 deploy/checks/scrape_test.py [--binary target/debug/switchboard] [--prometheus prometheus]

1. Starts Redis + 3 nodes (deploy/cluster.py) and Prometheus with a generated config: job
   `switchboard`, a `node` label per target (as the compose and Kubernetes configs give),
   1 s scrape and evaluation interval, deploy/prometheus/alerts.yml loaded.
2. Phase "100 users": WebSocket clients (deploy/checks/wsclient.py) connect, subscribe,
   publish, resume (recovered and not), send a bad frame and close; refused upgrades for four
   reasons; server-API publishes to 100 distinct users and 100 distinct rooms, and reads.
   Phase "10,000 users": the same with 100 sockets and 10,000 users and rooms.
3. Asserts: every metric the dashboard and the alerts read is exported by every node; every
   dashboard query (variables set to All and to one node) returns data over the test, and
   the variables' label_values find the job and the three nodes; no label value of any
   series carries a user id or channel name used; the set of series is the same after both
   phases (cardinality does not grow with users or channels); every alert rule is healthy
   (evaluated, no error) and none fires; finally Redis is killed and
   SwitchboardBackplaneDown must become pending for all three nodes.

Prints one line per check and `N passed, N failed`; exit status 1 when any check failed.
"""

import argparse
import concurrent.futures
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the tree
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "deploy"))
import promql  # noqa: E402
from cluster import DEV_API_KEY, DEV_SECRET, Cluster  # noqa: E402
from wsclient import Refused, WebSocket, jwt_hs256, pump  # noqa: E402

ALERTS = os.path.join(ROOT, "deploy", "prometheus", "alerts.yml")
DASHBOARD = os.path.join(ROOT, "grafana", "dashboards", "switchboard.json")
MARK = "sbobs"  # in every user id and channel name the test uses, never in a metric label
ROOMS_PER_PHASE_SOCKETS = 10
RESULTS = {"passed": 0, "failed": 0}


def check(ok, what, detail=""):
    RESULTS["passed" if ok else "failed"] += 1
    print(f"{'ok  ' if ok else 'FAIL'} {what}" + (f": {detail}" if detail and not ok else ""),
          flush=True)
    return ok


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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

    def series(self, start, end):
        """Every series of the job with a sample between start and end."""
        rows = self.api("series", **{"match[]": '{job="switchboard"}', "start": start, "end": end})
        return {tuple(sorted(r.items())) for r in rows}

    def current(self):
        """The series the last scrape of every node returned (an instant query)."""
        # ALERTS and ALERTS_FOR_STATE are the rules' output, not what the nodes export.
        rows = self.api("query", query='{job="switchboard", __name__!~"ALERTS.*"}')["result"]
        return {tuple(sorted(r["metric"].items())) for r in rows}

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


# -- traffic ---------------------------------------------------------------------------------

def token(user):
    return jwt_hs256(DEV_SECRET, {"sub": user, "exp": int(time.time()) + 3600,
                                  "channels": ["room:*"], "publish": ["room:*", "user:*"]})


def drive(cluster, phase, users, sockets):
    """One phase of traffic; returns the user ids and channel names it used."""
    ids = [f"{MARK}u-{phase}-{i}" for i in range(users)]
    rooms = [f"room:{MARK}r-{phase}-{i}" for i in range(users)]
    nodes = cluster.nodes
    clients = []
    for i in range(sockets):
        ws = WebSocket.connect(nodes[i % 3].public, token=token(ids[i]))
        welcome = ws.recv_json(want="welcome")
        ws.send_json({"type": "subscribe", "id": 1, "channel": rooms[i % ROOMS_PER_PHASE_SOCKETS]})
        clients.append((ws, welcome))
    for ws, _ in clients:
        ws.recv_json(want="reply")
    # Server API: one publish per user and per room (distinct channels), a few in single
    # requests, the rest as broadcasts of up to 1,000 channels (at least one per node).
    api = [f"http://{n.internal}/v1" for n in nodes]
    channels = [f"user:{u}" for u in ids] + rooms
    single, bulk = channels[:60], channels[60:]
    size = min(1000, -(-len(bulk) // 3))

    def publish(i_ch):
        i, ch = i_ch
        return http("POST", f"{api[i % 3]}/publish", {"channel": ch, "data": {"n": i}})[0]

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(publish, enumerate(single)))
        batches = [bulk[i:i + size] for i in range(0, len(bulk), size)]
        statuses += list(pool.map(
            lambda ib: http("POST", f"{api[ib[0] % 3]}/broadcast",
                            {"channels": ib[1], "data": {"phase": phase}})[0],
            enumerate(batches)))
    reads = [("GET", f"{api[0]}/users/{ids[0]}"), ("GET", f"{api[1]}/presence/{rooms[0]}"),
             ("GET", f"{api[2]}/history/{rooms[0]}"), ("GET", f"{api[0]}/nodes")]
    statuses += [http(m, u)[0] for m, u in reads]
    bad = [s for s in statuses if s != 200]
    check(not bad, f"phase {phase}: {len(statuses)} server-API requests answered 200",
          f"statuses {sorted(set(bad))}" if bad else "")
    # Client publishes, a bad frame, and what they all receive.
    for i, (ws, _) in enumerate(clients):
        ws.send_json({"type": "publish", "id": 2, "channel": rooms[i % ROOMS_PER_PHASE_SOCKETS],
                      "data": {"from": i}})
    clients[0][0].send_text("not json")
    received = pump([ws for ws, _ in clients])
    check(received >= 2 * sockets, f"phase {phase}: the {sockets} sockets received {received} messages")
    # Resumes: recovered (the position of the welcome) and not (an unknown epoch).
    for i, since in ((0, f"{clients[0][1]['epoch']}:{clients[0][1]['offset']}"), (1, "nosuchepoch:5")):
        ws = WebSocket.connect(nodes[i].public, token=token(ids[i]), query={"since": since})
        ws.recv_json(want="welcome")
        ws.close()
    # Refused upgrades.
    for i, (kw, status) in enumerate([
            ({}, 401),
            ({"token": "not.a.jwt"}, 401),
            ({"token": token(ids[0]), "headers": {"Origin": "http://elsewhere.example"}}, 403),
            ({"token": token(ids[0]), "headers": {"Sec-WebSocket-Protocol": "nope"}}, 400)]):
        try:
            WebSocket.connect(nodes[i % 3].public, **kw).close()
            got = 101
        except Refused as e:
            got = e.status
        check(got == status, f"phase {phase}: a refused upgrade answers {status}", f"got {got}")
    codes = {ws.close(1000) for ws, _ in clients}
    check(codes == {1000}, f"phase {phase}: {sockets} sockets closed with 1000", f"codes {codes}")
    return set(ids) | set(rooms) | set(channels)


# -- checks ----------------------------------------------------------------------------------

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


def check_metrics_exist(cluster, prom, queries, variables, rules):
    used = set()
    for _, expr in queries:
        used |= promql.metric_names(expr)
    for q in variables:
        used |= promql.metric_names(q[len("label_values("):].rsplit(",", 1)[0])
    alert_names = set()
    for r in rules:
        alert_names |= promql.metric_names(r["query"])
    used |= alert_names
    for node in cluster.nodes:
        missing = sorted(used - {"up"} - exported_names(node))
        check(not missing, f"{node.node_id} exports all {len(used - {'up'})} metrics the dashboard "
              "and alerts read", f"missing {missing}")
    up = prom.api("query", query='up{job="switchboard"} == 1')
    check(len(up["result"]) == 3, "Prometheus has up=1 for the 3 nodes", f"{len(up['result'])} series")


def check_dashboard_queries(cluster, prom, queries, variables, start, end):
    jobs = prom.api("label/job/values", **{"match[]": "switchboard_connections"})
    check("switchboard" in jobs, "variable job: label_values finds job=switchboard", f"{jobs}")
    nodes = prom.api("label/node/values", **{"match[]": 'switchboard_connections{job=~"switchboard"}'})
    check(sorted(nodes) == sorted(n.node_id for n in cluster.nodes),
          "variable node: label_values finds the 3 nodes", f"{nodes}")
    for setting in ({"node": ".*"}, {"node": cluster.nodes[1].node_id}):
        values = {"job": "switchboard", "__rate_interval": "4s", "__interval": "1s", **setting}
        empty = []
        for title, expr in queries:
            q = promql.substitute(expr, values)
            data = prom.api("query_range", query=q, start=start, end=end, step=1)
            finite = [v for s in data["result"] for _, v in s["values"] if math.isfinite(float(v))]
            if not finite:
                empty.append(title)
        check(not empty, f"all {len(queries)} dashboard queries return data with node={setting['node']}",
              f"no data: {empty}")


def check_labels(prom, used, start, end):
    series = prom.series(start, end)
    leaks = sorted({f"{k}={v}" for s in series for k, v in s if MARK in v or v in used})
    check(not leaks, f"no label value of {len(series)} series carries one of the {len(used)} user "
          "ids or channel names used", f"{leaks[:10]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "debug", "switchboard"))
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "prometheus")
    ap.add_argument("--users", type=int, default=10_000, help="users and rooms of the large phase")
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="switchboard-scrape-")
    prom = None
    try:
        with Cluster(binary=args.binary, nodes=3, args=["--drain-seconds", "2"]) as cluster:
            prom = Prometheus(args.prometheus, cluster, workdir)
            prom.wait("3 targets up", lambda: sum(
                t["health"] == "up" for t in prom.api("targets")["activeTargets"]) == 3)
            start = time.time()
            used = drive(cluster, "a", users=100, sockets=10)
            time.sleep(3)  # three scrapes
            small = prom.current()
            used |= drive(cluster, "b", users=args.users, sockets=100)
            time.sleep(3)
            large = prom.current()
            diff = [("+", dict(s)) for s in large - small] + [("-", dict(s)) for s in small - large]
            check(small == large and len(small) > 0,
                  f"series count flat: {len(small)} after 100 users, {len(large)} after {args.users}",
                  f"differences: {diff[:10]}")
            end = time.time()
            queries, variables = dashboard_queries()
            prom.wait("every rule evaluated", lambda: all(
                not r["lastEvaluation"].startswith("0001") for g in prom.api("rules")["groups"] for r in g["rules"]))
            rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
            check_metrics_exist(cluster, prom, queries, variables, rules)
            check_dashboard_queries(cluster, prom, queries, variables, start, end)
            check_labels(prom, used, start, end)
            for q in (0.5, 0.99):
                v = prom.api("query", query="histogram_quantile(%s, sum by (le) (increase("
                             "switchboard_delivery_latency_seconds_bucket[%ds])))" % (q, end - start + 1))
                print(f"info delivery latency p{int(q * 100)} over the run: "
                      f"{[r['value'][1] for r in v['result']]} s", flush=True)
            bad = [f"{r['name']}: {r['health']} {r.get('lastError', '')}" for r in rules
                   if r["health"] != "ok" or r.get("lastError")]
            check(len(rules) > 0 and not bad, f"all {len(rules)} alert rules healthy", f"{bad}")
            firing = [f"{r['name']} ({a['labels'].get('node')})" for r in rules for a in r.get("alerts", [])
                      if a["state"] == "firing"]
            check(not firing, "no alert fires under normal traffic", f"{firing}")
            # Redis goes away: every node must report it and the alert must see it.
            cluster.redis_proc.kill()
            cluster.redis_proc.wait()

            def pending():
                alerts = prom.api("alerts")["alerts"]
                nodes = {a["labels"].get("node") for a in alerts
                         if a["labels"]["alertname"] == "SwitchboardBackplaneDown"}
                return len(nodes) == 3
            try:
                prom.wait("SwitchboardBackplaneDown on 3 nodes", pending, timeout=45)
                check(True, "Redis killed: SwitchboardBackplaneDown is pending for all 3 nodes")
            except TimeoutError as e:
                check(False, "Redis killed: SwitchboardBackplaneDown is pending for all 3 nodes", str(e))
    except Exception as e:  # a crash is a failed check, with the logs kept
        check(False, "the scrape test ran to the end", f"{type(e).__name__}: {e}")
    finally:
        if prom:
            prom.stop()
    if RESULTS["failed"]:
        print(f"Prometheus files kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 1 if RESULTS["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
