"""W6: W2 (1:1 messages across the nodes through the server API, `loadgen direct --via api`)
on a Redis Cluster next to one Redis, in the same run: same rate, same pairs, the same user
ids (`--run-id w6`: users lg-w6-r<i>, so the same slots), fresh processes (gateways and every
redis-server) for each backplane:

    single    3 gateways on one redis-server
    cluster   3 gateways on a Redis Cluster of 3 primaries, no replicas (like for like)
    replicas  3 primaries × 1 replica; the gateway waits for a replica (WAIT) before it
              acknowledges (`--redis-replica-acks auto`, its default)

Per redis-server: utime+stime from /proc/<pid>/stat over the measured window (the loadgen's
`ready` to the end of sending + 1 s, direct.py), and its idle CPU: the same reading over
`idle_s` seconds before the loadgen starts (gateways up, no clients), scaled to the window.
INFO commandstats per redis-server over the window gives the messages each shard handled:
the calls of the per-message command (the command called about once per delivered message
that costs the most, e.g. `evalsha`). Self-contained: bench.py calls run(), report.py
section() and rows().
"""

import time
import traceback

from . import direct
from .. import procstat
from .fmt import met, msf, num

RUN_ID = "w6"
RUNS = (("single", "single", 0, "one Redis"),
        ("cluster", "cluster", 0, "Redis Cluster, 3 primaries"),
        ("replicas", "cluster", 1, "Redis Cluster, 3 primaries × 1 replica (WAIT 1)"))
SHARE_TARGET, SHARE_TOL = 100 / 3, 8.0
RATIO_TARGET = 1.2


def idle_cpu(sut, seconds):
    """CPU of the gateways and of each redis-server over `seconds` with no clients."""
    g0, r0 = procstat.cpu_of(sut.server_pids), {p: procstat.cpu_seconds(p) for p in sut.redis_pids}
    t0 = time.monotonic()
    time.sleep(seconds)
    g1, r1 = procstat.cpu_of(sut.server_pids), {p: procstat.cpu_seconds(p) for p in sut.redis_pids}
    return {"seconds": round(time.monotonic() - t0, 3),
            "gateways_cpu_s": round(procstat.cpu_delta(g0, g1), 3),
            "redis_by_pid": {str(p): round(r1[p] - r0[p], 3) for p in sut.redis_pids}}


def run(ctx, make_sut, cfg):
    """make_sut(redis=…, redis_replicas=…) -> an Ours context manager (fresh processes)."""
    out = {"rate": cfg["rate"], "pairs": cfg["pairs"], "duration_s": cfg["duration"],
           "idle_s": cfg["idle_s"], "run_id": RUN_ID, "runs": {}}
    for key, mode, replicas, title in RUNS:
        if key == "replicas" and not cfg.get("replicas"):
            continue
        ctx.log(f"W6 {title}: W2 API {cfg['rate']}/s, {cfg['pairs']} pairs")
        try:
            with make_sut(redis=mode, redis_replicas=replicas) as sut:
                idle = idle_cpu(sut, cfg["idle_s"])
                r = direct.one(ctx, sut, cfg["rate"], cfg["duration"], via="api",
                               pairs=cfg["pairs"], tag=f"-w6-{key}", run_id=RUN_ID)
                r.update(idle=idle, redis_roles=sut.redis_roles,
                         redis_url=sut.cluster.redis_url)
        except Exception as e:  # noqa: BLE001  (one backplane failing must not hide the others)
            ctx.log(f"W6 {key} FAILED: {type(e).__name__}: {e}")
            r = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()}
        r["title"] = title
        out["runs"][key] = r
    out["analysis"] = analyze(out)
    return out


def msg_command(commands, delivered):
    """The command that runs about once per delivered message (0.9–1.6 calls each) and costs
    the most in all: the one whose calls count the messages each shard handled."""
    if not delivered:
        return None
    cands = [(c["usec"], name) for name, c in commands.items()
             if 0.9 * delivered <= c["calls"] <= 1.6 * delivered]
    return max(cands)[1] if cands else None


def shards(r):
    """Per redis-server rows of one run (see the module doc for each figure)."""
    delivered = r.get("delivered") or 0
    wall = r.get("wall_s") or 0
    idle = r.get("idle") or {}
    roles = r.get("redis_roles", [])
    by_pid = r.get("redis_by_pid") or ({str(roles[0]["pid"]): r.get("redis_cpu_s")}
                                       if len(roles) == 1 else {})
    by_port = r.get("redis_commands_by_port") or ({str(roles[0]["port"]): r["redis_commands"]}
                                                  if len(roles) == 1 and r.get("redis_commands")
                                                  else {})
    cmd = msg_command(r.get("redis_commands") or {}, delivered)
    rows = []
    for role in roles:
        pid, port = str(role["pid"]), str(role["port"])
        cpu = by_pid.get(pid)
        if cpu is None:
            continue
        idle_cpu_s = None
        if idle.get("seconds") and pid in idle.get("redis_by_pid", {}):
            idle_cpu_s = round(idle["redis_by_pid"][pid] * wall / idle["seconds"], 3)
        stats = by_port.get(port) or {}
        handled = stats.get(cmd, {}).get("calls") if cmd else None
        rows.append({"role": role["role"], "port": role["port"], "pid": role["pid"],
                     "cpu_s": cpu, "idle_cpu_s": idle_cpu_s,
                     "us_per_delivered": round(cpu * 1e6 / delivered, 2) if delivered else None,
                     "handled": handled,
                     "us_per_handled": round(cpu * 1e6 / handled, 2) if handled else None})
    prim = [s for s in rows if s["role"] in ("primary", "single")]
    total = sum(s["cpu_s"] for s in prim)
    for s in prim:
        s["share_pct"] = round(100 * s["cpu_s"] / total, 1) if total > 0 else None
        s["msgs_per_core"] = round(1e6 / s["us_per_handled"]) if s["us_per_handled"] else None
    return {"msg_command": cmd, "rows": rows}


def summary(r):
    """One backplane's figures: primaries' (or the single Redis') and replicas' CPU per
    delivered message, with and without their idle CPU, and the Redis-bound capacity."""
    sh = shards(r)
    delivered = r.get("delivered") or 0
    prim = [s for s in sh["rows"] if s["role"] in ("primary", "single")]
    repl = [s for s in sh["rows"] if s["role"] == "replica"]

    def per_msg(rows, net=False):
        if not delivered or not rows:
            return None
        cpu = sum(s["cpu_s"] - ((s["idle_cpu_s"] or 0) if net else 0) for s in rows)
        return round(cpu * 1e6 / delivered, 2)
    busiest = max((s["us_per_delivered"] or 0) for s in prim) if prim else 0
    return {**sh, "redis_us": per_msg(prim), "redis_net_us": per_msg(prim, net=True),
            "replica_us": per_msg(repl), "gateway_us": r.get("gateway_cpu_us_per_msg"),
            # One core per shard: the busiest shard saturates first, at 1 s of its CPU.
            "capacity_msgs_s": round(1e6 / busiest) if busiest else None,
            "shares": [s.get("share_pct") for s in prim if s["role"] == "primary"]}


def analyze(w6):
    runs = {k: r for k, r in w6.get("runs", {}).items() if "error" not in r}
    out = {k: summary(r) for k, r in runs.items()}
    single, cl = out.get("single"), out.get("cluster")
    if single and cl and single["redis_us"] and cl["redis_us"]:
        out["ratio"] = round(cl["redis_us"] / single["redis_us"], 2)
        if single["redis_net_us"] and cl["redis_net_us"]:
            out["ratio_net"] = round(cl["redis_net_us"] / single["redis_net_us"], 2)
    return out


def rows(w6):
    """Target rows for the report's tables: (figure, target, measured, met?)."""
    if not w6 or not w6.get("ok", True):
        err = (w6 or {}).get("error", "not run")
        return [("W6 Redis Cluster", "", f"FAILED: {err}" if w6 else "not run",
                 "**no**" if w6 else "—")]
    a = w6.get("analysis", {})
    out = []
    cl = a.get("cluster")
    if cl and cl["shares"]:
        ok = all(s is not None and abs(s - SHARE_TARGET) <= SHARE_TOL for s in cl["shares"])
        out.append((f"W6 each shard's share of the Redis CPU ({num(w6['pairs'])} users, "
                    f"{num(w6['rate'])} msg/s)", "33 % ± 8 % each",
                    ", ".join(f"{s} %" for s in cl["shares"]), met(ok)))
    else:
        out.append(("W6 each shard's share of the Redis CPU", "33 % ± 8 % each",
                    _err(w6, "cluster"), "**no**"))
    if a.get("ratio") is not None:
        out.append(("W6 Redis CPU per message, Cluster (3 primaries) ÷ one Redis", "≤ 1.2×",
                    f"{a['ratio']}× ({a['cluster']['redis_us']} µs / "
                    f"{a['single']['redis_us']} µs; net of idle {a.get('ratio_net', '—')}×)",
                    met(a["ratio"] <= RATIO_TARGET)))
    else:
        out.append(("W6 Redis CPU per message, Cluster ÷ one Redis", "≤ 1.2×",
                    _err(w6, "single") or _err(w6, "cluster"), "**no**"))
    return out


def _err(w6, key):
    r = (w6.get("runs") or {}).get(key)
    return "not run" if r is None else (f"FAILED: {r['error']}" if "error" in r else "")


def section(w6):
    out = ["## W6 Redis Cluster: W2 on one Redis and on a Redis Cluster", ""]
    if not w6:
        return out + ["Not run.", ""]
    if not w6.get("ok", True):
        return out + [f"**Failed:** {w6.get('error')}", ""]
    a = w6.get("analysis", {})
    out += [f"W2 through the server API at {num(w6['rate'])} msg/s for {w6['duration_s']} s, "
            f"{num(w6['pairs'])} pairs ({num(w6['pairs'])} recipient users, the same ids in "
            "every run), 3 gateways; every backplane in fresh processes.", "",
            "Definitions (window: the loadgen's `ready` → end of sending + 1 s; CPU = "
            "utime+stime from /proc/<pid>/stat): **µs per delivered msg** of a redis-server = "
            "its CPU ÷ every message delivered in the run; **share** = its CPU ÷ the primaries' "
            "total; **messages handled** = its calls of the per-message command (INFO "
            "commandstats over the window); **µs per handled msg** = its CPU ÷ those; "
            "**msgs/s per shard core** = 1 s ÷ µs per handled msg; **Redis-bound msg/s** = 1 s ÷ "
            "the busiest shard's µs per delivered msg (the total rate at which that shard uses "
            "a full core); gateways µs/msg = the 3 gateways' CPU ÷ delivered. /proc counts CPU "
            f"in ticks of {procstat.CLK_TCK and 1000 // procstat.CLK_TCK} ms: each redis-server's "
            "figure carries ± one tick.", "",
            "| backplane | delivered | lost | p50 | p99 | gateways µs/msg | Redis µs/msg "
            "(primaries) | net of idle | replicas µs/msg | Redis-bound msg/s (1 core per "
            "shard) | msgs per gateway core |", "|---" * 11 + "|"]
    for key, _, _, title in RUNS:
        r = w6["runs"].get(key)
        if r is None:
            continue
        if "error" in r:
            out.append(f"| {title} | **failed:** {r['error']} |" + " |" * 9)
            continue
        s = a[key]
        gw = s["gateway_us"]
        out.append(f"| {title} | {num(r['delivered'])} | {r.get('lost')} | {msf(r['p50_ms'])} | "
                   f"{msf(r['p99_ms'])} | {gw} | {s['redis_us']} | {s['redis_net_us']} | "
                   f"{s['replica_us'] if s['replica_us'] is not None else '—'} | "
                   f"{num(s['capacity_msgs_s'])} | {num(1e6 / gw) if gw else '—'} |")
    for key, _, _, title in RUNS:
        s = a.get(key)
        if not s or key == "single":
            continue
        cmd = s["msg_command"] or "(none found)"
        out += ["", f"Per redis-server, {title} (messages handled = `{cmd}` calls):", "",
                "| redis-server | role | CPU-s | idle CPU-s (scaled) | µs per delivered msg | "
                "share of primaries' CPU | messages handled | µs per handled msg | "
                "msgs/s per shard core |", "|---" * 9 + "|"]
        for x in s["rows"]:
            share = f"{x['share_pct']} %" if x.get("share_pct") is not None else "—"
            out.append(f"| :{x['port']} (pid {x['pid']}) | {x['role']} | {x['cpu_s']:.2f} | "
                       f"{x['idle_cpu_s'] if x['idle_cpu_s'] is not None else '—'} | "
                       f"{x['us_per_delivered']} | {share} | {num(x['handled'])} | "
                       f"{x['us_per_handled'] or '—'} | {num(x.get('msgs_per_core'))} |")
    out += [""] + deployment(w6, a) + [""]
    first = next((w6["runs"][k] for k, *_ in RUNS if (w6["runs"].get(k) or {}).get("cmd")),
                 None)
    if first:
        out += [f"Command of the first run: `{first['cmd']}`", ""]
    return out


def deployment(w6, a):
    """What the figures mean for sizing a deployment, in sentences."""
    out = []
    single, cl, rep = a.get("single"), a.get("cluster"), a.get("replicas")
    if single and single["capacity_msgs_s"]:
        out.append(f"- **One Redis** spent {single['redis_us']} µs of CPU per delivered "
                   f"message: one core of it carries ≈ {num(single['capacity_msgs_s'])} msg/s "
                   "of this traffic (1 ÷ CPU per message; Redis runs commands on one thread).")
    if cl and cl["capacity_msgs_s"]:
        per_core = [x["msgs_per_core"] for x in cl["rows"] if x.get("msgs_per_core")]
        out.append(f"- **Redis Cluster, 3 primaries:** {cl['redis_us']} µs per message over "
                   f"all shards; a shard core handles ≈ "
                   f"{', '.join(num(v) for v in per_core) or '—'} msg/s of the messages routed "
                   f"to it; with one core per shard the cluster carries ≈ "
                   f"{num(cl['capacity_msgs_s'])} msg/s before its busiest shard is saturated "
                   "(1 ÷ the busiest shard's CPU per delivered message) — capacity grows with "
                   "the number of primaries as long as the users spread evenly over the slots.")
    if rep and rep["replica_us"] is not None:
        r = w6["runs"]["replicas"]
        out.append(f"- **With one replica per primary** each message also costs "
                   f"{rep['replica_us']} µs on the replicas (replication stream), the primaries "
                   f"{rep['redis_us']} µs (WAIT included); p50 {msf(r['p50_ms'])}, p99 "
                   f"{msf(r['p99_ms'])} (the gateway acknowledges after a replica has it).")
    if cl and cl["gateway_us"]:
        out.append(f"- The gateways need {cl['gateway_us']} µs per message on the Cluster "
                   f"({single['gateway_us'] if single else '—'} µs on one Redis): ≈ "
                   f"{num(1e6 / cl['gateway_us'])} msg/s per gateway core.")
    out.append("- Idle CPU: each redis-server's CPU over the idle seconds before the load "
               "(gateways connected: leases, probes, cluster bus), scaled to the window; "
               "'net of idle' subtracts it. Targets use the gross figures.")
    return out
