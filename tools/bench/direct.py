"""W2 1:1 messages across the nodes (`loadgen direct`): fixed rates and a saturation search.

Every run is a fresh loadgen (fresh connections) against the same cluster. CPU of the servers
(gateways or peer processes) and of Redis is utime+stime from /proc/<pid>/stat read when the
loadgen prints `ready` (setup excluded) and again after the sending phase plus one second
(DRAIN_S), before the loadgen's settle period ends and it closes its connections.
Messages per server CPU-second = messages delivered / (gateway CPU-s + Redis CPU-s).
Saturation: the rate grows ×STEP until a run fails (achieved rate < 95 % of the target, any
message lost or not acked, or p99 above P99_LIMIT_MS), then up to BISECTIONS bisection steps
within the time budget (it halves instead while nothing passed); the fixed-rate runs count
too; the saturation rate is the highest passing rate. Used by bench.py.
"""

import time

from .common import ms, q, run_loadgen

DRAIN_S = 1.0
SETTLE_S = 3
STEP = 1.5
P99_LIMIT_MS = 50.0
MIN_RATE = 250
BISECTIONS = 2


def batch_linger_ms(batch, rate, api_urls):
    """A linger long enough for every `/v1/batch` request to fill up to `batch` messages: the
    loadgen batches per API URL, each URL gets rate / api_urls messages per second; 1.5 × the
    time one batch takes to fill (at least the loadgen's default 5 ms)."""
    return max(5, int(1.5 * batch * api_urls * 1000 / rate + 0.999))


def one(ctx, sut, rate, duration, via="api", batch=None, pairs=300, tag="", run_id=None,
        on_ready=None, channel=None, per_msg_min_us=0.5):
    """One `direct` run. channel: None (user channels) or "room" (`--channel room`: every
    pair on a room of its own, room.py); per_msg_min_us: the smallest Redis time per message
    a command needs to be listed in redis_per_msg."""
    label = f"w2-{sut.name}-{via}{'-b%d' % batch if batch else ''}-{rate}{tag}"
    args = ["direct", "--pairs", pairs, "--rate", rate, "--duration", duration, "--via", via,
            "--settle-seconds", SETTLE_S]
    if channel:
        args += ["--channel", channel]
    linger = None
    if batch:
        linger = batch_linger_ms(batch, rate, len(sut.api))
        args += ["--batch", batch, "--batch-linger-ms", linger]
    if run_id:
        args += ["--run-id", run_id]
    ctx.log(f"W2 {sut.name} via={via}{' batch=%d' % batch if batch else ''}"
            f"{' channel=' + channel if channel else ''} rate={rate}/s for {duration}s{tag}")
    run = run_loadgen(ctx, sut, label, args, window_s=duration + DRAIN_S,
                      ready_timeout=60 + pairs / 100, run_timeout=duration + SETTLE_S + 120,
                      redis_stats=True, on_ready=on_ready)
    out = summarize(run, rate, duration, via, batch, pairs, per_msg_min_us)
    out["batch_linger_ms"] = linger
    out["channel"] = channel or "user"
    return out


def summarize(run, rate, duration, via, batch, pairs, per_msg_min_us=0.5):
    res, cpu = run["result"], run["cpu"]
    m = res.get("messages", {})
    delivered = m.get("delivered", 0) or 0
    server_cpu = cpu["gateways_cpu_s"] + cpu["redis_cpu_s"]
    achieved = m.get("rate_achieved")
    if achieved is None and duration:
        achieved = (m.get("sent") or 0) / duration
    out = {
        "rate": rate, "duration_s": duration, "via": via, "batch": batch, "pairs": pairs,
        "cmd": run["cmd"], "log": run["log"], "rc": run["rc"],
        "scheduled": m.get("scheduled"), "sent": m.get("sent"), "acked": m.get("acked"),
        "delivered": delivered, "lost": m.get("lost"), "duplicated": m.get("duplicated"),
        "out_of_order": m.get("out_of_order"), "send_failed": m.get("send_failed"),
        "unconfirmed": m.get("unconfirmed"), "rate_achieved": achieved,
        "p50_ms": ms(q(res, "latency_us", "p50")), "p90_ms": ms(q(res, "latency_us", "p90")),
        "p99_ms": ms(q(res, "latency_us", "p99")), "p999_ms": ms(q(res, "latency_us", "p999")),
        "max_ms": ms(q(res, "latency_us", "max")),
        "connect_failed": q(res, "connections", "failed"),
        **cpu,
        "msgs_per_server_cpu_s": round(delivered / server_cpu) if server_cpu > 0 else None,
        "gateway_cpu_us_per_msg": round(cpu["gateways_cpu_s"] * 1e6 / delivered, 2)
        if delivered else None,
        "redis_cpu_us_per_msg": round(cpu["redis_cpu_s"] * 1e6 / delivered, 2)
        if delivered else None,
        "server_cpu_us_per_msg": round(server_cpu * 1e6 / delivered, 2) if delivered else None,
    }
    if run.get("redis_commands"):
        out["redis_commands"] = run["redis_commands"]
    if run.get("redis_commands_by_port"):
        out["redis_commands_by_port"] = run["redis_commands_by_port"]
    if delivered and run.get("redis_commands"):
        # Redis time per delivered message by command (where the Redis CPU goes).
        out["redis_per_msg"] = {
            name: {"calls": round(c["calls"] / delivered, 2),
                   "us": round(c["usec"] / delivered, 1)}
            for name, c in sorted(run["redis_commands"].items(), key=lambda kv: -kv[1]["usec"])
            if c["usec"] / delivered >= per_msg_min_us}
    out["pass"], out["why"] = verdict(out)
    return out


def verdict(r):
    why = []
    if r["rate_achieved"] is not None and r["rate_achieved"] < 0.95 * r["rate"]:
        why.append(f"achieved {r['rate_achieved']:.0f}/s < 95% of {r['rate']}/s")
    for key in ("lost", "send_failed", "unconfirmed", "connect_failed"):
        if r.get(key):
            why.append(f"{key}={r[key]}")
    if r["p99_ms"] is None:
        why.append("no latency")
    elif r["p99_ms"] > P99_LIMIT_MS:
        why.append(f"p99 {r['p99_ms']:.1f} ms > {P99_LIMIT_MS:.0f} ms")
    return not why, "; ".join(why)


def saturate(ctx, sut, via, batch, start, duration, max_rate, budget_s, pairs, known=()):
    """Returns {"rate": highest passing rate or None, "runs": […], "stopped": reason}.

    `known`: runs already made (the fixed rates); a passing one seeds the lower bound. When
    the first step fails, the rate halves until a run passes (or MIN_RATE)."""
    t_end = time.monotonic() + budget_s
    runs = []
    best = max((r["rate"] for r in known if r["pass"]), default=None)
    fail = min((r["rate"] for r in known if not r["pass"]), default=None)
    rate = start
    stopped = "max rate reached"
    if fail is not None and fail <= start:  # a fixed rate already failed: search below it
        stopped = f"failed at {fail}/s (fixed rate)"
        rate = fail // 2
        if best is not None and rate <= best:
            rate = None
            stopped = f"failed at {fail}/s (fixed rate)"
    while rate is not None and rate <= max_rate:
        if time.monotonic() > t_end:
            stopped = "time budget"
            break
        r = one(ctx, sut, rate, duration, via, batch, pairs, tag="-sat")
        runs.append(r)
        if not r["pass"]:
            fail, stopped = rate, f"failed at {rate}/s: {r['why']}"
            if best is None and rate // 2 >= MIN_RATE:
                rate //= 2  # not even the first step: look lower
                continue
            break
        best = max(best or 0, rate)
        if fail is not None and rate * STEP >= fail:
            break
        rate = int(rate * STEP)
    for _ in range(BISECTIONS):
        if not (best and fail and fail - best > 0.1 * best and time.monotonic() < t_end):
            break
        mid = (best + fail) // 2
        r = one(ctx, sut, mid, duration, via, batch, pairs, tag="-sat")
        runs.append(r)
        if r["pass"]:
            best = mid
        else:
            fail = mid
            stopped = f"failed at {mid}/s: {r['why']}"
    return {"rate": best, "runs": runs, "stopped": stopped}


def run(ctx, sut, cfg, via="api", batch=None, search=True, half=True):
    """Fixed rates, then (optionally) the saturation search and a run at half of it."""
    out = {"system": sut.name, "via": via, "batch": batch, "fixed": [], "saturation": None,
           "half": None}
    for rate in cfg["fixed_rates"]:
        out["fixed"].append(one(ctx, sut, rate, cfg["duration"], via, batch, cfg["pairs"]))
    if search:
        sat = saturate(ctx, sut, via, batch, cfg["search_start"], cfg["search_duration"],
                       cfg["search_max"], cfg["search_budget_s"], cfg["pairs"],
                       known=out["fixed"])
        out["saturation"] = sat
        if sat["rate"] and half:
            out["half"] = one(ctx, sut, max(1, sat["rate"] // 2), cfg["duration"], via, batch,
                              cfg["pairs"], tag="-half")
    return out


def best_efficiency(w2):
    """The passing run with the most messages per server CPU-second (None when none passed)."""
    runs = list(w2.get("fixed", []))
    if w2.get("saturation"):
        runs += w2["saturation"]["runs"]
    if w2.get("half"):
        runs.append(w2["half"])
    ok = [r for r in runs if r["pass"] and r["msgs_per_server_cpu_s"]]
    return max(ok, key=lambda r: r["msgs_per_server_cpu_s"]) if ok else None
