"""Shared pieces of the workload modules: the run context (binaries, output directory, sizes,
progress log) and one helper that runs the load generator against a system under test with
CPU sampled over the measured window only. Imported by idle.py, direct.py, workloads.py.
"""

import json
import os
import sys
import time

from . import procs
from .. import procstat


class Ctx:
    def __init__(self, loadgen, gateway, outdir, quick):
        self.loadgen = loadgen
        self.gateway = gateway
        self.outdir = outdir
        self.quick = quick
        self.t0 = time.monotonic()
        self._n = 0

    def log(self, msg):
        el = time.monotonic() - self.t0
        print(f"[bench {el:6.0f}s] {msg}", file=sys.stderr, flush=True)

    def paths(self, label):
        """(json path, log path) for one loadgen run, numbered in run order."""
        self._n += 1
        base = os.path.join(self.outdir, f"{self._n:02d}-{label}")
        return base + ".json", base + ".log"

    def save(self, name, obj):
        with open(os.path.join(self.outdir, name), "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True)


def lg_common(sut, targets=None, api=None):
    """The loadgen's common flags for `sut`; targets / api: a subset of its nodes instead."""
    return ["--protocol", sut.protocol, "--targets", ",".join(targets or sut.targets),
            "--api", ",".join(api or sut.api)] + sut.auth_args


def cpu_snapshot(sut):
    return {"t": time.monotonic(), "gw": procstat.cpu_of(sut.server_pids),
            "redis": {pid: procstat.cpu_seconds(pid) for pid in sut.redis_pids}}


def cpu_window(a, b):
    """CPU seconds of the servers and of Redis between two snapshots, and the wall time;
    redis_by_pid: each redis-server's share (several with a Redis Cluster)."""
    out = {"wall_s": round(b["t"] - a["t"], 3),
           "gateways_cpu_s": round(procstat.cpu_delta(a["gw"], b["gw"]), 3),
           "redis_cpu_s": round(procstat.cpu_delta(a["redis"], b["redis"]), 3)}
    if len(b["redis"]) > 1:
        out["redis_by_pid"] = {
            str(pid): round(max(0.0, b["redis"][pid] - a["redis"].get(pid, 0.0)), 3)
            for pid in b["redis"]}
    return out


def reset_commandstats(sut):
    for port in sut.redis_ports:
        procs.redis_command(port, "CONFIG", "RESETSTAT")


def read_commandstats(sut):
    """({command: {calls, usec}} summed over every redis-server, {port: the same per port})."""
    by_port = {str(port): procs.redis_commandstats(port) for port in sut.redis_ports}
    total = {}
    for stats in by_port.values():
        for name, c in stats.items():
            t = total.setdefault(name, {"calls": 0, "usec": 0})
            t["calls"] += c["calls"]
            t["usec"] += c["usec"]
    return total, by_port


def run_loadgen(ctx, sut, label, args, window_s=None, ready_timeout=180, run_timeout=None,
                before=None, on_ready=None, redis_stats=False, targets=None, api=None):
    """Run one loadgen command against `sut`.

    CPU is read when the `ready` line arrives (setup excluded) and `window_s` seconds later
    (the sending phase plus a short drain), or when the loadgen exits if window_s is None.
    `before()` runs just before the start, `on_ready(lg)` right after the first CPU reading
    (it may block, e.g. to sample memory). redis_stats: Redis INFO commandstats over the same
    window (CONFIG RESETSTAT at its start, on every redis-server). targets / api: drive only
    these nodes. Returns a dict: result (loadgen JSON), rc, cpu, ready, log, and whatever
    before/on_ready returned.
    """
    json_path, log_path = ctx.paths(label)
    lg = procs.Loadgen(ctx.loadgen, args + lg_common(sut, targets, api), json_path, log_path)
    out = {"label": label, "cmd": " ".join(lg.cmd), "log": os.path.relpath(log_path)}
    out["before"] = before() if before else None
    lg.start()
    try:
        out["ready"] = lg.wait_ready(ready_timeout)
        c0 = cpu_snapshot(sut)
        if redis_stats:
            reset_commandstats(sut)
        out["on_ready"] = on_ready(lg) if on_ready else None
        if window_s is not None:
            left = c0["t"] + window_s - time.monotonic()
            if left > 0:
                time.sleep(left)
            out["cpu"] = cpu_window(c0, cpu_snapshot(sut))
            if redis_stats:
                out["redis_commands"], by_port = read_commandstats(sut)
                if len(by_port) > 1:
                    out["redis_commands_by_port"] = by_port
        rc, result = lg.finish(run_timeout or 600)
        if window_s is None:
            out["cpu"] = cpu_window(c0, cpu_snapshot(sut))
    except BaseException:
        procs.stop(lg.proc)
        raise
    out["rc"] = rc
    out["result"] = result
    if result is None:
        raise RuntimeError(f"loadgen {label} exited {rc} without a result: {lg.tail()}")
    if not sut.alive():
        raise RuntimeError(f"a server process of {sut.name} died during {label}")
    return out


def q(d, *path, default=None):
    """Nested get: q(result, "latency_us", "p99")."""
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


def ms(us):
    return None if us is None else round(us / 1000.0, 3)
