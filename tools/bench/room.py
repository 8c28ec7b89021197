"""W2 room: the Redis CPU of a room message without history, measured exactly like W2 API.

One `loadgen direct --channel room --via api` run with W2 API's pairs and duration at
5,000 msg/s (config.py "room"). Pair i's recipient (user `…-r<i>`, on node i mod 3)
subscribes to a room of its own, `room:lg-<run>-p<i>`, and the loadgen prints `ready` only
once every subscribe was answered ok; pair i's messages are published through node
(i + 1) mod 3's server API (`POST /v1/publish`), as in W2 API: the same layout (recipients on
one node, publishes through another), the same open loop, the same API connections and hence
the same natural pipelining. Only the channel differs: a room, which keeps no history (the
bench's gateways configure none), instead of the recipient's user channel (history = inbox).

Window and CPU as in direct.py: utime+stime from /proc/<pid>/stat at `ready` and at the end
of sending + 1 s; Redis CPU per delivered message; INFO commandstats over the same window
(CONFIG RESETSTAT at `ready`), per delivered message. Redis' idle CPU (leases, probes, the
rooms' presence) over `idle_s` seconds before the loadgen starts, scaled to the window, gives
the "net of idle" figure next to the gross one (the target uses the gross figure).

This replaces 6 `fanout` processes that each published through ONE API connection, one
request at a time (unpipelined commands, a round trip per message: p50 0.6 s at 5,000 msg/s,
saturated, so not comparable to W2); fan-out to several nodes is W3's job. Used by bench.py.
"""

import time

from . import direct
from .. import procstat


def idle_redis(sut, seconds):
    """Redis CPU seconds over `seconds` with the gateways up and no clients."""
    r0 = {p: procstat.cpu_seconds(p) for p in sut.redis_pids}
    t0 = time.monotonic()
    time.sleep(seconds)
    cpu = sum(procstat.cpu_seconds(p) - r0[p] for p in sut.redis_pids)
    return {"seconds": round(time.monotonic() - t0, 3), "redis_cpu_s": round(cpu, 3)}


def run(ctx, sut, cfg):
    if len(sut.targets) < 2:
        raise ValueError("the room workload needs a publishing node and another one")
    idle = idle_redis(sut, cfg.get("idle_s", 3))
    r = direct.one(ctx, sut, cfg["rate"], cfg["duration"], via="api", pairs=cfg["pairs"],
                   tag="-room", channel="room", per_msg_min_us=0.1)
    return summarize(r, idle)


def summarize(r, idle):
    """The W2 run's fields plus Redis' idle CPU scaled to the window and the net figure."""
    out = dict(r)
    delivered = r.get("delivered") or 0
    idle_cpu = None
    if idle and idle.get("seconds"):
        idle_cpu = idle["redis_cpu_s"] * (r.get("wall_s") or 0) / idle["seconds"]
    out["idle"] = idle
    out["redis_idle_cpu_s"] = round(idle_cpu, 3) if idle_cpu is not None else None
    out["redis_net_us_per_msg"] = (round((r["redis_cpu_s"] - idle_cpu) * 1e6 / delivered, 2)
                                   if delivered and idle_cpu is not None else None)
    return out
