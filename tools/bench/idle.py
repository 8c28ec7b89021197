"""W1 idle connections: memory per connection.

Adds connections in steps (one `loadgen idle` per step, each held open until the end) and,
after each step settled, reads the servers' RSS (VmRSS of the gateway or peer processes only:
the loadgen lives on this box too and is not counted), /proc/net/sockstat and the socket slab
caches. User bytes per connection = least-squares slope of total server RSS over connections.
Kernel bytes per connection: on loopback both ends of a connection are TCP sockets of this
kernel, so sockstat's TCP `inuse` grows by 2 per connection; the TCP `mem` pages (buffers)
are divided by `inuse` (least-squares slope of mem bytes over inuse across the steps) = the
memory of one end, the server's socket. The same per-socket slope is taken of the slab caches
(struct tcp_sock, file, epoll item). Used by bench.py.
"""

import signal
import time

from . import procs
from .. import procstat
from .common import lg_common


def _measure(sut, connections):
    rss = [procstat.rss_of([pid]) for pid in sut.server_pids]
    return {"connections": connections, "server_rss": rss, "server_rss_total": sum(rss),
            "redis_rss": sum(procstat.rss_bytes(pid) for pid in sut.redis_pids),
            "sockstat": procstat.sockstat(), "slab": procstat.slab_bytes()}


def _slope(xs, ys):
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    if den == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den


def run(ctx, sut, steps_per_node, settle_s=3.0, concurrency=256, step_budget_s=90.0):
    """steps_per_node: e.g. [0, 5000, 10000, 15000]; returns the W1 result dict. A step whose
    connects took longer than step_budget_s is the last one (bounded run time)."""
    nodes = len(sut.targets)
    time.sleep(1.0)
    points = [_measure(sut, 0)]
    held, runs = [], []
    established = 0
    stopped = None
    try:
        prev = steps_per_node[0]
        for per_node in steps_per_node[1:]:
            add = (per_node - prev) * nodes
            prev = per_node
            json_path, log_path = ctx.paths(f"w1-{sut.name}-idle-{per_node}")
            lg = procs.Loadgen(ctx.loadgen,
                               ["idle", "--connections", add, "--connect-rate", 0,
                                "--concurrency", concurrency, "--hold-seconds", 3600]
                               + lg_common(sut), json_path, log_path)
            ctx.log(f"W1 {sut.name}: +{add} connections (→ {per_node}/node)")
            t = time.monotonic()
            lg.start()
            held.append(lg)
            ok, failed = lg.wait_ready(120 + add / 200)
            connect_s = time.monotonic() - t
            established += ok
            runs.append({"cmd": " ".join(lg.cmd), "established": ok, "failed": failed,
                         "connect_wall_s": round(connect_s, 2)})
            if failed:
                ctx.log(f"W1 {sut.name}: {failed} connections failed")
            time.sleep(settle_s)
            if not sut.alive():
                raise RuntimeError(f"a server process of {sut.name} died at {per_node}/node")
            points.append(_measure(sut, established))
            if connect_s > step_budget_s and per_node != steps_per_node[-1]:
                stopped = (f"stopped at {per_node}/node: that step's connects took "
                           f"{connect_s:.0f} s (> {step_budget_s:.0f} s)")
                ctx.log(f"W1 {sut.name}: {stopped}")
                break
    finally:
        for lg in held:
            lg.signal(signal.SIGTERM)
        for lg, r in zip(held, runs + [{}] * len(held)):
            try:
                rc, res = lg.finish(120)
                r["rc"] = rc
                r["closes"] = (res or {}).get("closes")
            except Exception as e:  # noqa: BLE001  (a close problem must not hide the numbers)
                r["finish_error"] = str(e)
    out = summarize(sut, points, runs, nodes)
    out["stopped"] = stopped
    return out


def summarize(sut, points, runs, nodes):
    xs = [p["connections"] for p in points]
    user = _slope(xs, [p["server_rss_total"] for p in points])
    # Connection i goes to node i % nodes: each node holds about total / nodes of them.
    per_node_slopes = [_slope([x / nodes for x in xs], [p["server_rss"][i] for p in points])
                       for i in range(nodes)]
    first, last = points[0], points[-1]
    d_inuse = last["sockstat"]["tcp_inuse"] - first["sockstat"]["tcp_inuse"]
    d_mem = (last["sockstat"]["tcp_mem_pages"] - first["sockstat"]["tcp_mem_pages"]) \
        * procstat.PAGE_SIZE
    slab_d = {k: last["slab"].get(k, 0) - first["slab"].get(k, 0) for k in last["slab"]}
    # Per socket = least-squares slope over TCP inuse (sockstat is system-wide: a slope over
    # every step is less sensitive to other sockets on the box than last − first).
    inuse = [p["sockstat"]["tcp_inuse"] for p in points]
    kernel_tcp = _slope(inuse, [p["sockstat"]["tcp_mem_pages"] * procstat.PAGE_SIZE
                                for p in points]) if d_inuse > 0 else None
    kernel_slab = _slope(inuse, [sum(p["slab"].values()) for p in points]) \
        if d_inuse > 0 and slab_d else None
    conns = last["connections"]
    return {
        "system": sut.name, "nodes": nodes, "points": points, "runs": runs,
        "max_connections": conns, "max_per_node": conns / nodes if nodes else 0,
        "user_bytes_per_conn": user, "per_node_slopes": per_node_slopes,
        "tcp_inuse_delta": d_inuse, "sockets_per_conn": d_inuse / conns if conns else None,
        "tcp_mem_delta_bytes": d_mem, "kernel_tcp_bytes_per_conn": kernel_tcp,
        "slab_delta_bytes": slab_d, "kernel_slab_bytes_per_conn": kernel_slab,
        "total_bytes_per_conn": (user + (kernel_tcp or 0)) if user is not None else None,
        "total_with_slab_bytes_per_conn":
            (user + (kernel_tcp or 0) + (kernel_slab or 0)) if user is not None else None,
    }


def fresh_node(ctx, sut, connections, settle_s=3.0, concurrency=256):
    """W1 on a fresh node: `sut` is one node that has served nothing yet. Its RSS a second
    after it is ready (before), then after `connections` idle connections settled (after):
    (after − before) ÷ established = what one connection costs including the node's first
    allocations (maps and pools that grow with the first connections), which the slope over
    steps leaves out."""
    if len(sut.server_pids) != 1:
        raise ValueError("fresh_node measures one node")
    time.sleep(1.0)
    before = procstat.rss_of(sut.server_pids)
    json_path, log_path = ctx.paths(f"w1-{sut.name}-fresh-{connections}")
    lg = procs.Loadgen(ctx.loadgen,
                       ["idle", "--connections", connections, "--connect-rate", 0,
                        "--concurrency", concurrency, "--hold-seconds", 3600] + lg_common(sut),
                       json_path, log_path)
    ctx.log(f"W1 {sut.name}: fresh node, {connections} idle connections")
    lg.start()
    try:
        ok, failed = lg.wait_ready(120 + connections / 200)
        time.sleep(settle_s)
        if not sut.alive():
            raise RuntimeError(f"the {sut.name} node died holding {ok} connections")
        after = procstat.rss_of(sut.server_pids)
    finally:
        lg.signal(signal.SIGTERM)
        try:
            lg.finish(120)
        except Exception as e:  # noqa: BLE001  (a close problem must not hide the numbers)
            ctx.log(f"W1 {sut.name}: fresh node loadgen did not finish cleanly: {e}")
    return {"system": sut.name, "connections": connections, "established": ok,
            "failed": failed, "rss_before": before, "rss_after": after,
            "bytes_per_conn": (after - before) / ok if ok else None, "cmd": " ".join(lg.cmd)}
