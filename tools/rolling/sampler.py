"""Samples every node's /metrics and the machine's load once a second during a rolling restart.

Evidence for the report, not a check: when a second goes wrong (a burst of reconnects, a
stall in deliveries) these rows tell whether a node stopped answering (scrape_ms, down),
lost its backplane (backplane_up 0) or the machine was saturated (load1).
"""

import re
import threading
import time
import urllib.request

from ..resp import command as redis_cmd

SERIES = {
    "switchboard_connections": "connections",
    "switchboard_connections_total": "connections_total",
    "switchboard_backplane_up": "backplane_up",
    "switchboard_backplane_reconnects_total": "backplane_reconnects",
    "switchboard_delivery_gaps_total": "delivery_gaps",
    "switchboard_draining": "draining",
}
LINE = re.compile(r"^([a-z_]+)(\{[^}]*\})?\s+(\S+)$")


def parse(text):
    out = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        name, labels, value = m.groups()
        try:
            v = float(value)
        except ValueError:
            continue
        if name in SERIES and not labels:
            out[SERIES[name]] = v
        elif name == "switchboard_handshake_rejected_total":
            out["handshake_rejected"] = out.get("handshake_rejected", 0) + v
        elif name == "switchboard_disconnects_total" and labels:
            code = re.search(r'code="([^"]+)"', labels)
            if code:
                out[f"disconnects_{code.group(1)}"] = v
        elif name == "switchboard_recovery_total" and labels:
            res = re.search(r'result="([^"]+)"', labels)
            if res:
                out[f"recovery_{res.group(1)}"] = v
    return out


def load1():
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def slowlog(port):
    """SLOWLOG GET as dicts: when, took_ms, command (first words)."""
    try:
        entries = redis_cmd(port, "SLOWLOG", "GET", "10000") or []
    except (OSError, ValueError):
        return []
    return [{"unix": e[1], "took_ms": round(e[2] / 1000, 1),
             "command": " ".join(str(x) for x in (e[3] or [])[:4])[:120]} for e in entries]


class Sampler:
    """`nodes`: list of (node_id, internal "host:port"); ports stay the same across restarts.
    With `redis_port`, also the round trip of a PING to Redis (a busy script shows here)."""

    def __init__(self, nodes, every=1.0, redis_port=None):
        self.redis_port = redis_port
        self.nodes = nodes
        self.every = every
        self.rows = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        return self.rows

    def _run(self):
        while not self._stop.is_set():
            t = time.time()
            row = {"unix": round(t, 3), "load1": load1(), "nodes": {}}
            if self.redis_port:
                s = time.monotonic()
                try:
                    redis_cmd(self.redis_port, "PING")
                    row["redis_ping_ms"] = round((time.monotonic() - s) * 1000, 1)
                except (OSError, ValueError):
                    row["redis_ping_ms"] = None
            for node_id, internal in self.nodes:
                s = time.monotonic()
                try:
                    with urllib.request.urlopen(f"http://{internal}/metrics", timeout=2) as r:
                        m = parse(r.read().decode("utf-8", "replace"))
                    m["up"] = True
                except OSError:
                    m = {"up": False}
                m["scrape_ms"] = round((time.monotonic() - s) * 1000, 1)
                row["nodes"][node_id] = m
            self.rows.append(row)
            self._stop.wait(max(0.0, self.every - (time.time() - t)))


def around(rows, unix_s, before=3, after=3):
    """Compact lines for the seconds around `unix_s` (the report's evidence)."""
    out = []
    for r in rows:
        if unix_s - before <= r["unix"] < unix_s + 1 + after:
            parts = [f"{time.strftime('%H:%M:%S', time.localtime(r['unix']))}"
                     f".{int(r['unix'] * 10) % 10} load1={r['load1']} "
                     f"redis_ping={r.get('redis_ping_ms')}ms"]
            for nid, m in r["nodes"].items():
                if not m.get("up"):
                    parts.append(f"{nid}: down")
                    continue
                parts.append(f"{nid}: conns={int(m.get('connections', 0))} "
                             f"bp_up={int(m.get('backplane_up', 0))} "
                             f"drain={int(m.get('draining', 0))} scrape={m['scrape_ms']}ms")
            out.append("  ".join(parts))
    return out


STALL_MS = 250  # a PING or a /metrics scrape this slow: the machine, not the gateway, stalled


def stalls(rows, timeline, start, end):
    """Evidence that the machine stalled between unix seconds `start` and `end`: slow Redis
    PINGs or /metrics scrapes, a sampler that woke late (its own thread starved), seconds
    missing in the loadgen's timeline (its sampler starved). Empty list = none seen."""
    out = []
    prev = None
    for r in rows:
        t = r["unix"]
        if prev is not None and start <= t < end + 1 and t - prev >= 2.5:
            out.append(f"sampler slept {t - prev:.1f} s instead of 1 s before {t:.0f}")
        prev = t
        if not start <= t < end + 1:
            continue
        if (r.get("redis_ping_ms") or 0) >= STALL_MS:
            out.append(f"Redis PING {r['redis_ping_ms']} ms at {t:.0f}")
        for nid, m in r["nodes"].items():
            if m.get("up") and m["scrape_ms"] >= STALL_MS:
                out.append(f"{nid} /metrics took {m['scrape_ms']} ms at {t:.0f}")
    secs = [int(e["unix_s"]) for e in timeline if start <= e["unix_s"] < end]
    for a, b in zip(secs, secs[1:]):
        if b - a > 1:
            out.append(f"loadgen timeline skipped {b - a - 1} s after {a}")
    return out
