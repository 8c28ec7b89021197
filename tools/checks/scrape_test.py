"""A real Prometheus scrapes local 3-node clusters; the dashboard and the alerts are checked
against what it stores (standard library only; needs `prometheus` and `redis-server`).

    python3 -m tools.checks.scrape_test [--binary target/debug/switchboard] [--prometheus prometheus]
                                         [--pass single,cluster]

Pass "single" (one Redis, shard 0):
1. Starts Redis + 3 nodes (tools/cluster.py) and Prometheus with a generated config: job
   `switchboard`, a `node` label per target (as the compose and Kubernetes configs give),
   1 s scrape and evaluation interval, deploy/prometheus/alerts.yml loaded.
2. Phase "100 users": WebSocket clients (tools/checks/wsclient.py) connect, subscribe,
   publish, resume (recovered and not), send a bad frame and close; refused upgrades for four
   reasons; server-API publishes to 100 distinct users and 100 distinct rooms, and reads.
   Phase "10,000 users": the same with 100 sockets and 10,000 users and rooms.
3. Asserts: every metric the dashboard and the alerts read is exported by every node; every
   dashboard query (variables set to All and to one node) returns data over the test, and
   the variables' label_values find the job and the three nodes; no label value of any
   series carries a user id or channel name used; the set of series is the same after both
   phases (cardinality does not grow with users or channels); one Redis is shard "0" on
   every node, up, its primary the Redis; every alert rule is healthy (evaluated, no error)
   and none fires; finally Redis is killed and SwitchboardBackplaneDown and
   SwitchboardBackplaneShardDownEverywhere (shard 0) must become pending.

Pass "cluster" (a Redis Cluster of 3 shards): tools/checks/scrape_cluster.py.

Prints one line per check and `N passed, N failed`; exit status 1 when any check failed.
"""

import argparse
import concurrent.futures
import os
import shutil
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the tree
from .promharness import (  # noqa: E402
    RESULTS, ROOT, Prometheus, check, check_dashboard_queries, check_metrics_exist,
    check_rules_healthy, dashboard_queries, firing, http)
from ..cluster import DEV_SECRET, Cluster  # noqa: E402
from .wsclient import Refused, WebSocket, jwt_hs256, pump  # noqa: E402

MARK = "sbobs"  # in every user id and channel name the test uses, never in a metric label
ROOMS_PER_PHASE_SOCKETS = 10


# -- traffic ---------------------------------------------------------------------------------

def token(user):
    return jwt_hs256(DEV_SECRET, {"sub": user, "exp": int(time.time()) + 3600,
                                  "channels": ["room:*"], "publish": ["room:*", "user:*"]})


def drive(cluster, phase, users, sockets, workers=6):
    """One phase of traffic; returns the user ids and channel names it used. `workers`
    server-API requests run at once."""
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
    size = max(1, min(1000, -(-len(bulk) // 3)))

    def publish(i_ch):
        i, ch = i_ch
        return http("POST", f"{api[i % 3]}/publish", {"channel": ch, "data": {"n": i}})[0]

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
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

def check_labels(prom, used, start, end):
    series = prom.series(start, end)
    leaks = sorted({f"{k}={v}" for s in series for k, v in s if MARK in v or v in used})
    check(not leaks, f"no label value of {len(series)} series carries one of the {len(used)} user "
          "ids or channel names used", f"{leaks[:10]}")


def check_single_shard(cluster, prom):
    """One Redis is shard "0" on every node: up, its primary the Redis, no reconnects."""
    redis = f"127.0.0.1:{cluster.redis_port}"
    up = {(m["node"], m["shard"]): v for m, v in prom.query("switchboard_backplane_shard_up")}
    want = {(n.node_id, "0"): 1.0 for n in cluster.nodes}
    check(up == want, "one Redis: every node has one shard, shard 0, up", f"{up}")
    info = sorted((m["node"], m["shard"], m["primary"]) for m, _ in
                  prom.query("switchboard_backplane_shard_info == 1"))
    check(info == [(n.node_id, "0", redis) for n in cluster.nodes],
          f"one Redis: shard 0's primary is {redis} on every node", f"{info}")
    reconnects = [v for _, v in prom.query("switchboard_backplane_shard_reconnects_total")]
    unreplicated = [v for _, v in prom.query("switchboard_backplane_unreplicated_total")]
    check(reconnects == [0.0] * 3 and unreplicated == [0.0] * 3,
          "one Redis: no shard reconnects and no unreplicated publishes (nothing to wait for)",
          f"reconnects {reconnects}, unreplicated {unreplicated}")


def single_pass(args, workdir):
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
            rules = prom.rules()
            check_metrics_exist(cluster, prom, queries, variables, rules)
            check_dashboard_queries(cluster, prom, queries, variables, start, end)
            check_labels(prom, used, start, end)
            check_single_shard(cluster, prom)
            for q in (0.5, 0.99):
                v = prom.api("query", query="histogram_quantile(%s, sum by (le) (increase("
                             "switchboard_delivery_latency_seconds_bucket[%ds])))" % (q, end - start + 1))
                print(f"info delivery latency p{int(q * 100)} over the run: "
                      f"{[r['value'][1] for r in v['result']]} s", flush=True)
            check_rules_healthy(rules)
            hot = firing(rules)
            check(not hot, "no alert fires under normal traffic", f"{hot}")
            # Redis goes away: every node must report it and the alerts must see it.
            cluster.redis_proc.kill()
            cluster.redis_proc.wait()

            def pending():
                down = {a["labels"].get("node") for a in prom.alerts("SwitchboardBackplaneDown")}
                everywhere = [a["labels"].get("shard") for a in
                              prom.alerts("SwitchboardBackplaneShardDownEverywhere")]
                return len(down) == 3 and everywhere == ["0"]
            what = ("Redis killed: SwitchboardBackplaneDown is pending for all 3 nodes and "
                    "SwitchboardBackplaneShardDownEverywhere for shard 0")
            try:
                prom.wait(what, pending, timeout=45)
                check(True, what)
            except TimeoutError as e:
                check(False, what, str(e))
    finally:
        if prom:
            prom.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "debug", "switchboard"))
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "prometheus")
    ap.add_argument("--users", type=int, default=10_000, help="users and rooms of the large phase")
    ap.add_argument("--pass", dest="passes", default="single,cluster",
                    help="which passes to run, comma-separated: single, cluster")
    args = ap.parse_args()
    kept = []
    for name in args.passes.split(","):
        workdir = tempfile.mkdtemp(prefix=f"switchboard-scrape-{name}-")
        failed = RESULTS["failed"]
        print(f"== pass {name}", flush=True)
        try:
            if name == "single":
                single_pass(args, workdir)
            elif name == "cluster":
                from . import scrape_cluster
                scrape_cluster.run(args, workdir, drive)
            else:
                check(False, f"pass {name!r} exists (single, cluster)")
        except Exception as e:  # a crash is a failed check, with the logs kept
            check(False, f"pass {name} ran to the end", f"{type(e).__name__}: {e}")
        if RESULTS["failed"] > failed:
            kept.append(workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    for workdir in kept:
        print(f"Prometheus files kept in {workdir}")
    known = f", {RESULTS['known']} known issues (XFAIL)" if RESULTS["known"] else ""
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed{known}")
    return 1 if RESULTS["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
