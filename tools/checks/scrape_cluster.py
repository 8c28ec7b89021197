"""The Redis Cluster pass of scrape_test.py: the per-shard series and alerts on real data.

1. A Redis Cluster of 3 primaries without replicas (tools/cluster.py, redis="cluster"),
   with `cluster-require-full-coverage no` so that the other shards keep serving when one is
   lost; 3 nodes with `--redis-replica-acks 1`: no replica exists, so every publish that
   stores a message waits out its WAIT (at most 200 ms) and is counted unreplicated (the counter moves on
   real traffic, deterministically); Prometheus as in the single pass. The server-API requests
   go one at a time: WAIT blocks the connection it is sent on, so concurrent publishes to one
   primary would queue behind each other's WAIT and pass --redis-timeout-ms.
2. Before traffic: every node has shards 0, 1 and 2, up, no reconnects, exactly one current
   primary per shard; the three primaries are the cluster's three, one per shard, and every
   node maps the shards to the same primaries.
3. Traffic (scrape_test.drive, 10 users, one request at a time): the nodes receive channels through at least two
   shards beyond their idle subscriptions; unreplicated publishes = the user-channel publishes
   (user channels keep history; rooms here keep none, so nothing is stored or waited for) and
   SwitchboardBackplaneUnreplicated fires on every node; every dashboard query returns data;
   every metric the dashboard and the alerts read is exported; every rule is healthy and no
   other alert fires.
4. The primary of shard 1 is killed: shard 1 goes down on every node while 0 and 2 stay up,
   /readyz answers 503 naming the shard and its primary, SwitchboardBackplaneShardDown becomes
   pending for shard 1 on the three nodes and SwitchboardBackplaneShardDownEverywhere for
   shard 1, its description naming the primary. Once the cluster has marked the primary
   failed (cluster-node-timeout, 6 s here, and a little more), shard 1 must still be down
   and the shards must keep their numbers and primaries (a shard whose primary failed stays
   in the gateway's slot map, not serving).
"""

import os
import signal
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the tree
from .promharness import (  # noqa: E402
    Prometheus, check, check_dashboard_queries, check_metrics_exist, check_rules_healthy,
    dashboard_queries, firing, http)
from ..cluster import Cluster  # noqa: E402

SHARDS = ["0", "1", "2"]
# cluster-node-timeout: the shard is down on the nodes within a second or two of the kill and
# the alerts are pending a second or two later, well before the cluster marks the primary
# failed (after this timeout).
NODE_TIMEOUT_S = 6
USERS = 10  # drive() publishes to each user's channel once, through the server API
KILLED = "1"
L = "cluster: "


def per_node(prom, expr):
    """{node: {shard: value}} of an instant query."""
    out = {}
    for m, v in prom.query(expr):
        out.setdefault(m["node"], {})[m["shard"]] = v
    return out


def check_topology(cluster, prom):
    """Shards, primaries and their starting values; returns {shard: primary}."""
    nodes = sorted(n.node_id for n in cluster.nodes)
    up = per_node(prom, "switchboard_backplane_shard_up")
    check(sorted(up) == nodes and all(up[n] == dict.fromkeys(SHARDS, 1.0) for n in nodes),
          f"{L}every node has shards 0, 1, 2, all up", f"{up}")
    reconnects = per_node(prom, "switchboard_backplane_shard_reconnects_total")
    check(all(reconnects.get(n) == dict.fromkeys(SHARDS, 0.0) for n in nodes),
          f"{L}no shard reconnects yet", f"{reconnects}")
    current = {}
    for m, _ in prom.query("switchboard_backplane_shard_info == 1"):
        current.setdefault(m["node"], []).append((m["shard"], m["primary"]))
    maps = {n: dict(sorted(current.get(n, []))) for n in nodes}
    one_each = all(len(current.get(n, [])) == len(SHARDS) == len(maps[n]) for n in nodes)
    agree = len({tuple(sorted(m.items())) for m in maps.values()}) == 1
    primaries = sorted(f"127.0.0.1:{p}" for p in cluster.redis_primary_ports)
    shard_map = maps[nodes[0]]
    check(one_each and agree and sorted(shard_map.values()) == primaries,
          f"{L}one current primary per shard, the cluster's 3 primaries, the same on every node",
          f"{maps} (primaries {primaries})")
    return shard_map


def subscriptions_follow_rooms(prom, baseline, start, end):
    """Shards through which some node received more channels during the traffic than idle."""
    peak = {}
    for m, v in prom.query(f"max_over_time(switchboard_backplane_shard_subscriptions[{int(end - start) + 1}s])"):
        peak[(m["node"], m["shard"])] = v
    grew = {shard for (node, shard), v in peak.items() if v > baseline.get(node, {}).get(shard, 0)}
    check(len(grew) >= 2, f"{L}room channels spread over shards: subscriptions grew on shards "
          f"{sorted(grew)} during the traffic", f"idle {baseline}, peak {peak}")


def kill_shard(cluster, prom, shard_map):
    primary = shard_map[KILLED]
    port = int(primary.rsplit(":", 1)[1])
    os.kill(cluster.redis_primary_pids[cluster.redis_primary_ports.index(port)], signal.SIGKILL)
    killed_at = time.monotonic()
    nodes = sorted(n.node_id for n in cluster.nodes)

    def lost():
        up = per_node(prom, "switchboard_backplane_shard_up")
        return all(up.get(n, {}).get(KILLED) == 0.0 for n in nodes)
    what = f"{L}primary of shard {KILLED} ({primary}) killed: shard {KILLED} down on every node"
    try:
        prom.wait(what, lost, timeout=30)
        check(True, what)
    except TimeoutError as e:
        check(False, what, str(e))
        return
    up = per_node(prom, "switchboard_backplane_shard_up")
    others = {n: {s: v for s, v in up[n].items() if s != KILLED} for n in nodes}
    check(all(o == {s: 1.0 for s in SHARDS if s != KILLED} for o in others.values()),
          f"{L}the other shards stay up on every node", f"{up}")
    reason = f"shard {KILLED} ({primary})"
    answers = [http("GET", f"http://{n.internal}/readyz", key=None) for n in cluster.nodes]
    check(all(st == 503 and reason.encode() in body for st, body in answers),
          f"{L}/readyz answers 503 naming {reason} on every node", f"{answers}")

    def pending():
        down = {(a["labels"]["node"], a["labels"]["shard"]) for a in
                prom.alerts("SwitchboardBackplaneShardDown")}
        everywhere = prom.alerts("SwitchboardBackplaneShardDownEverywhere")
        return (down == {(n, KILLED) for n in nodes} and len(everywhere) == 1
                and everywhere[0]["labels"]["shard"] == KILLED
                and f"(primary {primary})" in everywhere[0]["annotations"]["description"])
    what = (f"{L}SwitchboardBackplaneShardDown pending for shard {KILLED} on the 3 nodes and "
            f"SwitchboardBackplaneShardDownEverywhere for shard {KILLED}, naming {primary}")
    try:
        prom.wait(what, pending, timeout=30)
        check(True, what)
    except TimeoutError as e:
        alerts = [(a["labels"], a["annotations"].get("description", "")[:120]) for a in
                  prom.api("alerts")["alerts"]]
        check(False, what, f"{e}; alerts {alerts}")
    # The cluster marks the primary failed after its node timeout; nothing takes over.
    time.sleep(max(0.0, killed_at + 2 * NODE_TIMEOUT_S + 2 - time.monotonic()))
    up = per_node(prom, "switchboard_backplane_shard_up")
    info = {}
    for m, _ in prom.query("switchboard_backplane_shard_info == 1"):
        info.setdefault(m["node"], {}).setdefault(m["shard"], []).append(m["primary"])
    same = all(info.get(n) == {s: [p] for s, p in shard_map.items()} for n in nodes)
    still = all(up.get(n, {}).get(KILLED) == 0.0 for n in nodes)
    check(same and still, f"{L}{2 * NODE_TIMEOUT_S + 2} s after the kill, the primary marked "
          f"failed: shard {KILLED} still down and every shard on its primary",
          f"up {up}; current primaries {info}; expected {shard_map}")


def run(args, workdir, drive):
    """The pass; `drive` is scrape_test's traffic generator."""
    prom = None
    try:
        with Cluster(binary=args.binary, nodes=3, redis="cluster", redis_replicas=0,
                     redis_node_timeout_ms=NODE_TIMEOUT_S * 1000,
                     redis_args=["--cluster-require-full-coverage", "no"],
                     args=["--drain-seconds", "2", "--redis-replica-acks", "1"]) as cluster:
            prom = Prometheus(args.prometheus, cluster, workdir)
            prom.wait("3 targets up", lambda: sum(
                t["health"] == "up" for t in prom.api("targets")["activeTargets"]) == 3)
            prom.wait("every shard series scraped", lambda: len(
                prom.query("switchboard_backplane_shard_up")) == 3 * len(SHARDS))
            shard_map = check_topology(cluster, prom)
            idle = per_node(prom, "switchboard_backplane_shard_subscriptions")
            start = time.time()
            drive(cluster, "c", users=USERS, sockets=9, workers=1)
            time.sleep(3)  # three scrapes
            end = time.time()
            subscriptions_follow_rooms(prom, idle, start, end)
            unreplicated = {m["node"]: v for m, v in prom.query("switchboard_backplane_unreplicated_total")}
            check(sum(unreplicated.values()) == USERS and all(v > 0 for v in unreplicated.values()),
                  f"{L}unreplicated publishes = the {USERS} user-channel publishes, on every node",
                  f"{unreplicated}")
            queries, variables = dashboard_queries()
            rules = prom.rules()
            check_metrics_exist(cluster, prom, queries, variables, rules, L)
            check_dashboard_queries(cluster, prom, queries, variables, start, end, L)
            check_rules_healthy(rules, L)
            try:
                prom.wait("SwitchboardBackplaneUnreplicated firing on 3 nodes", lambda: len(
                    prom.alerts("SwitchboardBackplaneUnreplicated", "firing")) == 3, timeout=15)
                check(True, f"{L}SwitchboardBackplaneUnreplicated fires on the 3 nodes")
            except TimeoutError as e:
                check(False, f"{L}SwitchboardBackplaneUnreplicated fires on the 3 nodes", str(e))
            hot = firing(prom.rules(), except_=("SwitchboardBackplaneUnreplicated",))
            check(not hot, f"{L}no other alert fires", f"{hot}")
            kill_shard(cluster, prom, shard_map)
    finally:
        if prom:
            prom.stop()
