#!/usr/bin/env python3
"""Switchboard benchmark runner: workloads W1–W5 against a local 3-node cluster (Redis on a
free port), W1/W2 against the peers of loadtest/peers side by side, then BENCHMARKS.md.

    make bench          # full run (≈ 20 min), or: python3 loadtest/bench/bench.py
    make bench-quick    # ≈ 3 min with smaller sizes (BENCH_QUICK=1), for development
    python3 loadtest/bench/bench.py --only W1,W4 --peers none --out /tmp/B.md

Needs target/release/switchboard and target/release/switchboard-loadgen (make bench builds
them). Every workload gets a fresh cluster; every process started is killed at the end (also
on Ctrl-C / SIGTERM / errors); a failing workload is reported as failed, the run goes on.
Raw results: target/bench/<timestamp>/ (results.json + one JSON and log per loadgen run).
Stdlib only.
"""

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import direct  # noqa: E402
import floor  # noqa: E402
import idle  # noqa: E402
import peers  # noqa: E402
import procs  # noqa: E402
import procstat  # noqa: E402
import report  # noqa: E402
import workloads  # noqa: E402
from common import Ctx  # noqa: E402
from sut import ROOT, Ours  # noqa: E402

FULL = {
    "w1_steps": [0, 5000, 10000, 15000],
    "w2": {"fixed_rates": [2000, 5000], "duration": 10, "pairs": 300, "search_start": 8000,
           "search_duration": 6, "search_max": 400000, "search_budget_s": 120},
    "w2_ws": {"fixed_rates": [2000], "duration": 10, "pairs": 300, "search_start": 8000,
              "search_duration": 6, "search_max": 400000, "search_budget_s": 90},
    "w2_batch": {"fixed_rates": [2000], "duration": 10, "pairs": 300, "search_start": 8000,
                 "search_duration": 6, "search_max": 400000, "search_budget_s": 90},
    "batch": 10,
    "w3": {"subscribers": 10000, "messages": 30, "rate": 2},
    "w4": {"connections": 15000, "concurrency": 256},
    "w5": {"subscribers": 100, "slow": 20, "messages": 3000, "rate": 300, "payload": 4096},
    "peers": {"w1_steps": [0, 5000, 10000],
              "w2": {"fixed_rates": [2000, 5000], "duration": 10, "pairs": 300}},
}
QUICK = {
    "w1_steps": [0, 1000, 2000],
    "w2": {"fixed_rates": [2000], "duration": 4, "pairs": 100, "search_start": 4000,
           "search_duration": 3, "search_max": 400000, "search_budget_s": 20},
    "w2_ws": {"fixed_rates": [2000], "duration": 4, "pairs": 100, "search_start": 4000,
              "search_duration": 3, "search_max": 400000, "search_budget_s": 10},
    "w2_batch": {"fixed_rates": [2000], "duration": 4, "pairs": 100, "search_start": 4000,
                 "search_duration": 3, "search_max": 400000, "search_budget_s": 10},
    "batch": 10,
    "w3": {"subscribers": 2000, "messages": 10, "rate": 2},
    "w4": {"connections": 3000, "concurrency": 128},
    "w5": {"subscribers": 50, "slow": 5, "messages": 2500, "rate": 500, "payload": 4096},
    "peers": {"w1_steps": [0, 1000],
              "w2": {"fixed_rates": [2000], "duration": 3, "pairs": 100}},
}
# W5 payloads are 4 KiB: on loopback the kernel lets a non-reading socket's send buffer grow
# to a few MiB (MSS 64 KiB), which has to fill before the gateway's own queue (1024 frames /
# 4 MiB) does; 512 B × 1500 messages never reached it.
WORKLOADS = ["floor", "W1", "W2", "W3", "W4", "W5", "peers"]
ALL_PEERS = ["socketio", "ws", "sockudo"]


class Interrupted(BaseException):
    pass


def on_sigterm(*_):
    raise Interrupted("SIGTERM")


def git_rev():
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return rev + (" (working tree has uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def batch_supported(sut):
    """POST /v1/batch with an empty list: 404/405 = this build has no batch endpoint."""
    import urllib.error
    import urllib.request
    req = urllib.request.Request(sut.api[0] + "/v1/batch", data=b'{"messages":[]}',
                                 headers={"Authorization": "Bearer " + sut.auth_args[1],
                                          "Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5):
            return True
    except urllib.error.HTTPError as e:
        return e.code not in (404, 405)


def server_cpu_total(results):
    """CPU seconds of the servers + Redis inside every measured window of the run."""
    total = 0.0

    def walk(o):
        nonlocal total
        if isinstance(o, dict):
            if "gateways_cpu_s" in o and "redis_cpu_s" in o:
                total += o["gateways_cpu_s"] + o["redis_cpu_s"]
                return
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk({k: v for k, v in results.items() if k != "meta"})
    return total


def main():
    ap = argparse.ArgumentParser(description="Run the benchmarks and write BENCHMARKS.md")
    ap.add_argument("--quick", action="store_true",
                    default=os.environ.get("BENCH_QUICK", "") not in ("", "0"),
                    help="smaller sizes, ≈ 3 minutes (also BENCH_QUICK=1)")
    ap.add_argument("--only", default=",".join(WORKLOADS),
                    help="comma list of floor,W1,W2,W3,W4,W5,peers (default: all)")
    ap.add_argument("--peers", default=os.environ.get("BENCH_PEERS", ",".join(ALL_PEERS)),
                    help="comma list of socketio,ws,sockudo, or none")
    ap.add_argument("--gateway", default=os.path.join(ROOT, "target/release/switchboard"))
    ap.add_argument("--loadgen", default=os.path.join(ROOT, "target/release/switchboard-loadgen"))
    ap.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    ap.add_argument("--results", default=os.path.join(ROOT, "target/bench"))
    ap.add_argument("--command", default=None, help="the command to record in the report")
    a = ap.parse_args()
    only = {w.strip() for w in a.only.split(",") if w.strip()}
    peer_list = [] if a.peers in ("", "none") else [p.strip() for p in a.peers.split(",")]
    cfg = QUICK if a.quick else FULL
    for path in (a.gateway, a.loadgen):
        if not os.path.exists(path):
            sys.exit(f"bench: {path} is missing (make bench builds it)")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by every child
    stamp = time.strftime("%Y%m%d-%H%M%S")
    outdir = os.path.join(a.results, stamp)
    os.makedirs(outdir, exist_ok=True)
    latest = os.path.join(a.results, "latest")
    if os.path.islink(latest) or not os.path.exists(latest):
        if os.path.islink(latest):
            os.remove(latest)
        os.symlink(stamp, latest)
    ctx = Ctx(a.loadgen, a.gateway, outdir, a.quick)
    cmd = a.command or " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "started_unix": time.time(),
            "git": git_rev(), "machine": procstat.machine(), "command": cmd,
            "quick": a.quick, "config": cfg, "nofile_limit": hard, "results_dir":
            os.path.relpath(outdir, ROOT), "only": sorted(only), "peers": peer_list}
    results = {"meta": meta}
    cpu_start = procstat.cpu_totals()
    meta["tcp_inuse_at_start"] = procstat.sockstat().get("tcp_inuse")
    signal.signal(signal.SIGTERM, on_sigterm)

    def guarded(key, fn):
        t = time.monotonic()
        try:
            results[key] = {"ok": True, **fn()}
        except (KeyboardInterrupt, Interrupted):
            raise
        except Exception as e:  # noqa: BLE001  (one failure must not stop the run)
            ctx.log(f"{key} FAILED: {type(e).__name__}: {e}")
            results[key] = {"ok": False, "error": f"{type(e).__name__}: {e}",
                            "trace": traceback.format_exc()}
        finally:
            procs.stop_all()
            results.setdefault(key, {})["elapsed_s"] = round(time.monotonic() - t, 1)
            ctx.save("results.json", results)

    def ours(extra=()):
        return Ours(a.gateway, nodes=3, extra_args=extra)

    def w1():
        with ours() as sut:
            return idle.run(ctx, sut, cfg["w1_steps"])

    def w2(via, key_cfg, batch=None):
        def fn():
            with ours() as sut:
                if batch and not batch_supported(sut):
                    raise RuntimeError("this gateway build has no POST /v1/batch (404)")
                return direct.run(ctx, sut, cfg[key_cfg], via=via, batch=batch)
        return fn

    def w3():
        with ours() as sut:
            return workloads.w3(ctx, sut, cfg["w3"])

    def w4():
        with ours() as sut:
            return workloads.w4(ctx, sut, cfg["w4"])

    def w5():
        return workloads.w5(ctx, ours, cfg["w5"])

    interrupted = None
    try:
        if "floor" in only:  # the load generator's own floor, on a box without a cluster
            guarded("floor", lambda: floor.run(ctx))
        if "W1" in only:
            guarded("W1", w1)
        if "W2" in only:
            guarded("W2_api", w2("api", "w2"))
            guarded("W2_ws", w2("ws", "w2_ws"))
            guarded("W2_batch", w2("api", "w2_batch", batch=cfg["batch"]))
        if "W3" in only:
            guarded("W3", w3)
        if "W4" in only:
            guarded("W4", w4)
        if "W5" in only:
            guarded("W5", w5)
        if "peers" in only:
            results["peers"] = {}
            for p in peer_list:
                guarded(f"peer_{p}", lambda p=p: peers.run(ctx, p, cfg["peers"]))
    except (KeyboardInterrupt, Interrupted) as e:
        interrupted = type(e).__name__
        ctx.log(f"interrupted ({interrupted}): stopping every process")
    finally:
        procs.stop_all()
    meta["elapsed_s"] = round(time.monotonic() - ctx.t0, 1)
    meta["box_cpu"] = procstat.box_busy(cpu_start, procstat.cpu_totals())
    meta["server_cpu_s"] = round(server_cpu_total(results), 1)
    with open("/proc/loadavg") as f:
        meta["loadavg_at_end"] = " ".join(f.read().split()[:3])
    meta["interrupted"] = interrupted
    ctx.save("results.json", results)
    if interrupted:
        ctx.log(f"not writing {a.out} (interrupted); partial results in {outdir}")
        return 130
    text = report.render(results)
    # Hand-kept before/after records of the fixes (profiles, one-off measurements) stay
    # at the end of every generated report.
    history = os.path.join(os.path.dirname(os.path.abspath(__file__)), "history.md")
    if os.path.exists(history):
        with open(history) as f:
            text = text.rstrip("\n") + "\n\n" + f.read()
    with open(a.out, "w") as f:
        f.write(text)
    with open(os.path.join(outdir, "BENCHMARKS.md"), "w") as f:
        f.write(text)
    ctx.log(f"wrote {a.out} and {outdir}/results.json in {meta['elapsed_s']:.0f}s")
    print(report.summary_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
