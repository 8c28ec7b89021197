"""W3 room fan-out, W4 connect storm, W5 slow consumers (each against a cluster the caller
started fresh). Used by bench.py.

W3: `loadgen fanout --subscribers N --channel feed:bench` through the server API; the figure
    is the time until the LAST subscriber has a message (p50/p99/max over messages).
W4: `loadgen storm`: CPU of the gateways (and Redis) and the TcpExt ListenOverflows /
    ListenDrops counters of /proc/net/netstat are read just before the loadgen starts and
    when it prints `ready` (every connect attempt finished) = the storm's window.
    Connects per gateway CPU-second = established / gateway CPU-s ("per core").
W5: the same fan-out twice, without and with `--slow K` subscribers that never read; gateway
    RSS sampled every 0.25 s (before, peak, after); the slow ones must be closed with 4008,
    the normal subscribers' p99 compared between both runs.
"""

import threading
import time

from .. import procstat
from .common import cpu_snapshot, cpu_window, ms, q, run_loadgen

OUTBOUND_QUEUE_BYTES = 4194304  # the gateway default (--outbound-queue-bytes)


def fanout_once(ctx, sut, label, subscribers, messages, rate, payload=64, slow=0,
                sample_rss=False):
    args = ["fanout", "--subscribers", subscribers, "--channel", "feed:bench",
            "--messages", messages, "--rate", rate, "--via", "api", "--payload-bytes", payload,
            "--settle-seconds", 3]
    if slow:
        args += ["--slow", slow]
    send_s = messages / rate
    sampler = RssSampler(sut.server_pids) if sample_rss else None

    def on_ready(_lg):
        if sampler:
            sampler.mark_ready()

    slow_metric = "switchboard_slow_consumer_disconnects_total"
    slow0 = sut.metric(slow_metric) if slow and hasattr(sut, "metric") else None
    if sampler:
        sampler.start()
    try:
        run = run_loadgen(ctx, sut, label, args, window_s=send_s + 2.0,
                          ready_timeout=120 + subscribers / 100,
                          run_timeout=send_s + 180, on_ready=on_ready)
        if sampler:
            time.sleep(1.0)
    finally:
        if sampler:
            sampler.stop()
    res = run["result"]
    m = res.get("messages", {})
    out = {
        "cmd": run["cmd"], "log": run["log"], "rc": run["rc"], "subscribers": subscribers,
        "messages": messages, "rate": rate, "payload_bytes": payload, "slow": slow,
        "established": q(res, "connections", "established"),
        "connect_failed": q(res, "connections", "failed"),
        "delivered": m.get("delivered"), "lost": m.get("lost"),
        "expected_deliveries": subscribers * messages,
        "last_p50_ms": ms(q(res, "fanout", "last_recipient_us", "p50")),
        "last_p99_ms": ms(q(res, "fanout", "last_recipient_us", "p99")),
        "last_max_ms": ms(q(res, "fanout", "last_recipient_us", "max")),
        "p50_ms": ms(q(res, "latency_us", "p50")), "p99_ms": ms(q(res, "latency_us", "p99")),
        "p999_ms": ms(q(res, "latency_us", "p999")), "max_ms": ms(q(res, "latency_us", "max")),
        "slow_closes": q(res, "slow", "closes"), "closes": res.get("closes"),
        **run["cpu"],
    }
    if sampler:
        out["rss"] = sampler.summary()
    if slow0 is not None:
        out["slow_consumer_disconnects_metric"] = sut.metric(slow_metric) - slow0
    return out


def w3(ctx, sut, cfg):
    ctx.log(f"W3 fan-out to {cfg['subscribers']} subscribers, {cfg['messages']} messages "
            f"at {cfg['rate']}/s")
    r = fanout_once(ctx, sut, "w3-fanout", cfg["subscribers"], cfg["messages"], cfg["rate"])
    r["deliveries_per_s"] = round((r["delivered"] or 0) / r["wall_s"]) if r["wall_s"] else None
    return r


def w4(ctx, sut, cfg):
    ctx.log(f"W4 connect storm: {cfg['connections']} connections, "
            f"concurrency {cfg['concurrency']}")
    box = {}

    def before():
        box["rejected"] = sut.metric("switchboard_handshake_rejected_total")
        box["net"] = procstat.netstat_tcpext()
        box["cpu"] = cpu_snapshot(sut)

    def on_ready(_lg):
        box["cpu1"] = cpu_snapshot(sut)
        box["net1"] = procstat.netstat_tcpext()

    run = run_loadgen(ctx, sut, "w4-storm",
                      ["storm", "--connections", cfg["connections"],
                       "--concurrency", cfg["concurrency"]],
                      ready_timeout=120 + cfg["connections"] / 200, before=before,
                      on_ready=on_ready, run_timeout=300)
    res = run["result"]
    cpu = cpu_window(box["cpu"], box["cpu1"])
    est = q(res, "connections", "established") or 0
    net = {k: box["net1"].get(k, 0) - box["net"].get(k, 0)
           for k in ("ListenOverflows", "ListenDrops", "TCPReqQFullDrop", "TCPReqQFullDoCookies",
                     "SyncookiesSent", "TCPTimeouts")}
    return {
        "cmd": run["cmd"], "log": run["log"], "rc": run["rc"],
        "connections": cfg["connections"], "concurrency": cfg["concurrency"],
        "established": est, "failed": q(res, "connections", "failed"),
        "failures": q(res, "connections", "failures"),
        "connect_per_s_wall": q(res, "connections", "connect_per_s"),
        "handshake_p50_ms": ms(q(res, "connections", "handshake_us", "p50")),
        "handshake_p99_ms": ms(q(res, "connections", "handshake_us", "p99")),
        "handshake_max_ms": ms(q(res, "connections", "handshake_us", "max")),
        **cpu,
        "connects_per_gateway_cpu_s": round(est / cpu["gateways_cpu_s"])
        if cpu["gateways_cpu_s"] > 0 else None,
        "connects_per_server_cpu_s": round(est / (cpu["gateways_cpu_s"] + cpu["redis_cpu_s"]))
        if cpu["gateways_cpu_s"] > 0 else None,
        "netstat_delta": net,
        "handshake_rejected_metric":
            sut.metric("switchboard_handshake_rejected_total") - box["rejected"],
        "listen_overflows": net["ListenOverflows"] + net["ListenDrops"],
    }


def w5(ctx, sut_factory, cfg):
    """Two runs, each in a fresh cluster from sut_factory(): without and with slow consumers."""
    out = {}
    for slow in (0, cfg["slow"]):
        tag = "with-slow" if slow else "baseline"
        ctx.log(f"W5 slow consumers: {tag} ({cfg['subscribers']} subscribers, slow={slow}, "
                f"{cfg['messages']} × {cfg['payload']} B at {cfg['rate']}/s)")
        with sut_factory() as sut:
            out[tag] = fanout_once(ctx, sut, f"w5-{tag}", cfg["subscribers"], cfg["messages"],
                                   cfg["rate"], payload=cfg["payload"], slow=slow,
                                   sample_rss=True)
    base, with_slow = out["baseline"], out["with-slow"]
    k = cfg["slow"]
    closes = with_slow.get("slow_closes") or {}
    out["slow"] = k
    out["slow_closed_4008"] = int(closes.get("4008", 0))
    out["p99_ratio"] = (round(with_slow["p99_ms"] / base["p99_ms"], 2)
                        if base["p99_ms"] and with_slow["p99_ms"] is not None else None)
    grow_b = base["rss"]["peak"] - base["rss"]["ready"]
    grow_s = with_slow["rss"]["peak"] - with_slow["rss"]["ready"]
    out["extra_peak_rss"] = grow_s - grow_b
    # Per slow connection: its outbound queue (≤ 4 MiB) plus the one coalesced write the
    # writer task has taken out of it and cannot finish.
    out["rss_bound"] = k * 2 * OUTBOUND_QUEUE_BYTES
    out["unbounded_bytes"] = k * cfg["messages"] * cfg["payload"]
    out["rss_after_minus_before"] = with_slow["rss"]["after"] - with_slow["rss"]["before"]
    return out


class RssSampler:
    """Total RSS of the given pids every 0.25 s in a thread: before, at ready, peak, after."""

    def __init__(self, pids, interval=0.25):
        self.pids = pids
        self.interval = interval
        self.samples = []
        self.ready_idx = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.samples.append((time.monotonic(), procstat.rss_of(self.pids)))
        self._thread.start()

    def mark_ready(self):
        self.samples.append((time.monotonic(), procstat.rss_of(self.pids)))
        self.ready_idx = len(self.samples) - 1

    def _run(self):
        while not self._stop.wait(self.interval):
            self.samples.append((time.monotonic(), procstat.rss_of(self.pids)))

    def stop(self):
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic(), procstat.rss_of(self.pids)))

    def summary(self):
        vals = [v for _, v in self.samples]
        ready = vals[self.ready_idx] if self.ready_idx is not None else vals[0]
        after_ready = vals[self.ready_idx:] if self.ready_idx is not None else vals
        return {"before": vals[0], "ready": ready, "peak": max(after_ready), "after": vals[-1],
                "samples": len(vals)}
