"""Switchboard benchmark runner: workloads W1–W6 against local 3-node clusters (Redis on free
ports), the same workloads behind the hot-path figures against a baseline binary (the
"before" column), perf profiles of both, W1/W2 against the peers of loadtest/peers side by
side, then BENCHMARKS.md.

    make bench                      # full run (≈ 20–30 min), or: python3 -m tools.bench
    make bench BENCH_QUICK=1        # ≈ 6 min with smaller sizes, for development
    make bench BENCH_BASELINE=/path/to/switchboard   # or a git revision, or none
    python3 -m tools.bench --only W2,W6 --peers none --baseline none --out /tmp/B.md

Needs target/release/switchboard and target/release/switchboard-loadgen (make bench builds
them). Every workload gets fresh processes; every process started is killed at the end (also
on Ctrl-C / SIGTERM / errors); a failing workload is reported as failed, the run goes on.
Raw results: target/bench/<timestamp>/ (results.json, one JSON and log per loadgen run, the
perf recordings). Stdlib only.
"""

import argparse
import os
import resource
import signal
import subprocess
import sys
import time
import traceback

from . import baseline
from . import direct
from . import floor
from . import hotpath
from . import idle
from . import peers
from . import perfprof
from . import procs
from .. import procstat
from . import report
from . import room
from . import w6
from . import workloads
from .common import Ctx
from .config import BASELINE_WORKLOADS, FULL, QUICK
from .sut import ROOT, Ours

WORKLOADS = ["floor", "W1", "W2", "W3", "W4", "W5", "W6", "profile", "peers"]
# --only W1 / W2 stand for these; each can also be named on its own.
GROUPS = {"W1": ["W1", "W1_fresh"], "W2": ["W2_api", "W2_ws", "W2_batch", "W2_room"]}
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


def parse_args():
    ap = argparse.ArgumentParser(description="Run the benchmarks and write BENCHMARKS.md")
    ap.add_argument("--quick", action="store_true",
                    default=os.environ.get("BENCH_QUICK", "") not in ("", "0"),
                    help="smaller sizes, ≈ 6 minutes (also BENCH_QUICK=1)")
    ap.add_argument("--only", default=",".join(WORKLOADS),
                    help="comma list of " + ",".join(WORKLOADS) + " (W1 = W1,W1_fresh; W2 = "
                    "W2_api,W2_ws,W2_batch,W2_room, each also alone); default: all")
    ap.add_argument("--peers", default=os.environ.get("BENCH_PEERS", ",".join(ALL_PEERS)),
                    help="comma list of socketio,ws,sockudo, or none")
    ap.add_argument("--gateway", default=os.path.join(ROOT, "target/release/switchboard"))
    ap.add_argument("--loadgen", default=os.path.join(ROOT, "target/release/switchboard-loadgen"))
    ap.add_argument("--baseline", default=os.environ.get("BENCH_BASELINE", "none"),
                    help="the 'before' gateway: a binary path, a git revision (built with "
                    "build-baseline.sh) or none (also BENCH_BASELINE); runs "
                    + ",".join(BASELINE_WORKLOADS) + " and the profile on it as well")
    ap.add_argument("--baseline-binary", default=None, metavar="PATH",
                    help="the same as --baseline PATH")
    ap.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    ap.add_argument("--results", default=os.path.join(ROOT, "target/bench"))
    ap.add_argument("--command", default=None, help="the command to record in the report")
    return ap.parse_args()


def selected(only_arg):
    only = set()
    for w in (x.strip() for x in only_arg.split(",")):
        if w:
            only.update(GROUPS.get(w, [w]))
    return only


def main():
    a = parse_args()
    only = selected(a.only)
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
    base = baseline.resolve(a.baseline_binary or a.baseline, ctx.log)
    cmd = a.command or " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "started_unix": time.time(),
            "git": git_rev(), "machine": procstat.machine(), "command": cmd,
            "quick": a.quick, "config": cfg, "nofile_limit": hard, "results_dir":
            os.path.relpath(outdir, ROOT), "only": sorted(only), "peers": peer_list,
            "gateway": a.gateway, "loadgen": a.loadgen, "baseline": base}
    results = {"meta": meta}
    if base:
        results["baseline"] = {}
    cpu_start = procstat.cpu_totals()
    meta["tcp_inuse_at_start"] = procstat.sockstat().get("tcp_inuse")
    signal.signal(signal.SIGTERM, on_sigterm)

    def guarded(key, fn, store=None):
        store = results if store is None else store
        t = time.monotonic()
        try:
            store[key] = {"ok": True, **fn()}
        except (KeyboardInterrupt, Interrupted):
            raise
        except Exception as e:  # noqa: BLE001  (one failure must not stop the run)
            ctx.log(f"{key} FAILED: {type(e).__name__}: {e}")
            store[key] = {"ok": False, "error": f"{type(e).__name__}: {e}",
                          "trace": traceback.format_exc()}
        finally:
            procs.stop_all()
            store.setdefault(key, {})["elapsed_s"] = round(time.monotonic() - t, 1)
            ctx.save("results.json", results)

    cur = {"binary": a.gateway, "name": "switchboard", "label": "Switchboard"}
    bas = base and {"binary": base["binary"], "name": "baseline",
                    "label": f"Switchboard baseline ({base['label']})"}

    def mk(system, nodes=3, **kw):
        return Ours(system["binary"], nodes=nodes, name=system["name"], label=system["label"],
                    **kw)

    def both(key, fn):
        """fn(system) on the current build, then on the baseline (right after it)."""
        if key not in only:
            return
        guarded(key, lambda: fn(cur))
        if bas and key in BASELINE_WORKLOADS:
            guarded(key, lambda: fn(bas), store=results["baseline"])

    def w1(system):
        with mk(system) as sut:
            return idle.run(ctx, sut, cfg["w1_steps"])

    def w1_fresh(system):
        with mk(system, nodes=1) as sut:
            return idle.fresh_node(ctx, sut, cfg["w1_fresh"])

    def w2(via, key_cfg, batch=None, search=True):
        def fn(system):
            with mk(system) as sut:
                if batch and not batch_supported(sut):
                    raise RuntimeError("this gateway build has no POST /v1/batch (404)")
                return direct.run(ctx, sut, cfg[key_cfg], via=via, batch=batch, search=search,
                                  half=system is cur)
        return fn

    def room_fn(system):
        with mk(system) as sut:
            return room.run(ctx, sut, cfg["room"])

    def w3(system):
        with mk(system) as sut:
            return workloads.w3(ctx, sut, cfg["w3"])

    def w4(system):
        with mk(system) as sut:
            return workloads.w4(ctx, sut, cfg["w4"])

    def profiles():
        out = {}
        for tag, system in (("baseline", bas), ("current", cur)):
            if system:
                with mk(system) as sut:
                    out[tag] = perfprof.run(ctx, sut, cfg["profile"])
                procs.stop_all()
        return out

    interrupted = None
    try:
        if "floor" in only:  # the load generator's own floor, before any cluster runs
            guarded("floor", lambda: floor.run(ctx))
        both("W1", w1)
        both("W1_fresh", w1_fresh)
        both("W2_api", w2("api", "w2"))
        if "W2_ws" in only:
            guarded("W2_ws", lambda: w2("ws", "w2_ws")(cur))
        both("W2_batch", w2("api", "w2_batch", batch=cfg["w2_batch"]["batch"], search=False))
        both("W2_room", room_fn)
        both("W3", w3)
        both("W4", w4)
        if "W5" in only:
            guarded("W5", lambda: workloads.w5(ctx, lambda: mk(cur), cfg["w5"]))
        if "W6" in only:
            guarded("W6", lambda: w6.run(ctx, lambda **kw: mk(cur, **kw), cfg["w6"]))
        if "profile" in only:
            guarded("profiles", profiles)
        if "peers" in only:
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
    # Hand-kept before/after records of the fixes stay at the end of every report.
    text = report.with_history(report.render(results))
    with open(a.out, "w") as f:
        f.write(text)
    with open(os.path.join(outdir, "BENCHMARKS.md"), "w") as f:
        f.write(text)
    ctx.log(f"wrote {a.out} and {outdir}/results.json in {meta['elapsed_s']:.0f}s")
    print(report.summary_table(results, with_hotpath=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
