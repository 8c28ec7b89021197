"""W2 room: the path of a room message without history, W2-like (published through the server
API of one node, delivered on the others), for "Redis CPU per room message".

The load generator has no W2-like room mode: `direct` only addresses user channels, and
`fanout` publishes to one channel through ONE API connection, one request at a time (its
rate is bounded by one round trip, and Redis would see unpipelined commands only). So K
`fanout` processes run at once, each on its own room `room:bench-<i>` (rooms keep no history
by default) at rate / K, publishing through node (i mod 3)'s API with its subscribers on the
two other nodes only (the loadgen gets just those as --targets): K concurrent publishers
spread over the 3 nodes, like W2's API connections.

Window: every process's CPU from just before the K loadgens start to when the last one
exited (all sending, the backlog, the 2K subscribers' setup and close); Redis CPU per
published message = redis-server CPU ÷ messages acked. The idle CPU of Redis (leases,
probes) is read over `idle_s` seconds before and reported next to it, scaled to the window.
Used by bench.py.
"""

import time

import procs
import procstat
from common import cpu_snapshot, cpu_window, lg_common, ms, q, read_commandstats, \
    reset_commandstats


def run(ctx, sut, cfg, channel="room:bench"):
    n = len(sut.targets)
    if n < 2:
        raise ValueError("the room workload needs a publishing node and another one")
    k, rate, duration = cfg.get("publishers", 6), cfg["rate"], cfg["duration"]
    per = rate / k
    messages = int(per * duration)
    idle_s = cfg.get("idle_s", 3)
    r0 = {p: procstat.cpu_seconds(p) for p in sut.redis_pids}
    time.sleep(idle_s)
    idle = sum(procstat.cpu_seconds(p) - r0[p] for p in sut.redis_pids)
    ctx.log(f"W2 room {sut.name}: {k} publishers × {messages} messages at {per:.0f}/s to "
            f"{channel}-<i>, {cfg['subscribers']} subscribers each on the other nodes")
    lgs = []
    c0 = cpu_snapshot(sut)
    reset_commandstats(sut)
    try:
        for i in range(k):
            pub = i % n
            others = [t for j, t in enumerate(sut.targets) if j != pub]
            json_path, log_path = ctx.paths(f"w2-{sut.name}-room-{rate}-p{i}")
            args = ["fanout", "--subscribers", cfg["subscribers"], "--channel",
                    f"{channel}-{i}", "--messages", messages, "--rate", round(per, 3),
                    "--via", "api", "--payload-bytes", 64, "--settle-seconds", 3, "--quiet"]
            lg = procs.Loadgen(ctx.loadgen, args + lg_common(sut, others, [sut.api[pub]]),
                               json_path, log_path)
            lgs.append(lg.start())
        for lg in lgs:
            lg.wait_ready(60)
        results = [lg.finish(duration + 180) for lg in lgs]
    except BaseException:
        for lg in lgs:
            procs.stop(lg.proc)
        raise
    cpu = cpu_window(c0, cpu_snapshot(sut))
    commands, _ = read_commandstats(sut)
    if not sut.alive():
        raise RuntimeError(f"a server process of {sut.name} died during the room workload")
    missing = [lg.log_path for lg, (_, res) in zip(lgs, results) if res is None]
    if missing:
        raise RuntimeError(f"loadgen exited without a result: {missing[0]}")
    return summarize(results, cpu, commands, idle, idle_s, lgs[0].cmd, cfg, channel, k)


def summarize(results, cpu, commands, idle, idle_s, cmd, cfg, channel, k):
    def total(key):
        return sum((res.get("messages") or {}).get(key) or 0 for _, res in results)
    acked = total("acked")
    p99s = [q(res, "latency_us", "p99") for _, res in results]
    p99s = [v for v in p99s if v is not None]
    idle_cpu = idle * cpu["wall_s"] / idle_s if idle_s else None
    out = {"cmd": " ".join(cmd), "rcs": [rc for rc, _ in results], "channel": f"{channel}-<i>",
           "publishers": k, "rate": cfg["rate"], "duration_s": cfg["duration"],
           "subscribers": cfg["subscribers"], "messages": total("scheduled") or None,
           "sent": total("sent"), "acked": acked, "delivered": total("delivered"),
           "lost": total("lost"), "send_failed": total("send_failed"),
           "rate_achieved": round(sum((res.get("messages") or {}).get("rate_achieved") or 0
                                      for _, res in results)),
           "p50_ms": ms(max((q(res, "latency_us", "p50") or 0) for _, res in results)),
           "p99_ms": ms(max(p99s)) if p99s else None, **cpu,
           "redis_idle_cpu_s": round(idle_cpu, 3) if idle_cpu is not None else None,
           "redis_cpu_us_per_msg": round(cpu["redis_cpu_s"] * 1e6 / acked, 2) if acked else None,
           "redis_net_us_per_msg": round((cpu["redis_cpu_s"] - (idle_cpu or 0)) * 1e6 / acked, 2)
           if acked else None,
           "gateway_cpu_us_per_msg":
               round(cpu["gateways_cpu_s"] * 1e6 / acked, 2) if acked else None}
    if acked and commands:
        out["redis_per_msg"] = {
            name: {"calls": round(c["calls"] / acked, 2), "us": round(c["usec"] / acked, 1)}
            for name, c in sorted(commands.items(), key=lambda kv: -kv[1]["usec"])
            if c["usec"] / acked >= 0.2}
    return out
