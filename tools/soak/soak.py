"""Soak: a 3-node cluster on one Redis under churning connections for ~10 minutes, with one
Redis restart and one node SIGKILL in the middle; nothing acknowledged may be lost and the
nodes' RSS and open fds must stay flat.

    python3 -m tools.soak --binary target/release/switchboard [--seconds 600]
        [--redis-restart keep|empty] [--users 120] [--out target/artifacts/soak]

`make soak` runs it (SOAK_SECONDS=120 for a short try). Timeline, for --seconds D:

    0 .. W          warm-up (W = --warmup-seconds, default max(30, 0.15·D))
    W               checkpoint A: every client closes, 3 s later RSS and fds are read (the
                    median of 5 samples), the load resumes
    0.40·D          Redis SIGKILLed, restarted on its port after --redis-down-seconds
    0.60·D          node-3 SIGKILLed, restarted (same id and ports) after --node-down-seconds
    0.80·D          checkpoint C, as A (C → B is reported, not judged: the slope after the
                    restarts, apart from the one-time step a restart may leave)
    D               publishing stops, every user reconnects and the run waits until every
                    acknowledged message was delivered (or --settle-seconds pass)
    end             checkpoint B, as A

--redis-restart keep (default): Redis runs with AOF `appendfsync always`, so a SIGKILL loses
nothing it acknowledged, and the run is strict — no acknowledged user-channel message may
be missing, not even behind a `resync` / `recovered:false`. --redis-restart empty: no
persistence; messages the restart erased count as gap-answered when the user got a `resync`
frame or `recovered:false` for them, and only unanswered ones are lost.

The nodes' RSS and fds are sampled every second from /proc; the flatness verdict compares
checkpoint A with checkpoint B (both idle, so a leaked socket or task shows as it is) for
every process with the same pid at both (node-3 and Redis were restarted: reported only).

Output: the report (markdown) on stdout and in <out>/soak.md, everything in <out>/soak.json,
the node and Redis logs in <out>/logs/. Exit 0 = pass, 1 = a check failed, 2 = the run failed.
"""

import argparse
import glob
import json
import os
import random
import re
import shutil
import signal
import string
import subprocess
import sys
import threading
import time
import urllib.request

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
from ..checks.wsclient import jwt_hs256
from ..cluster import DEV_API_KEY, DEV_SECRET, Cluster
from .clients import Pool, User
from .ledger import Ledger
from .footprint import Sampler, checkpoint, growth
from .publisher import ApiPublisher
from . import report

AOF = ["--appendonly", "yes", "--appendfsync", "always"]
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# `<time> <LEVEL> <target>: <message> key=value …` (tracing's default format)
LOG_LINE = re.compile(r"\S+\s+(TRACE|DEBUG|INFO|WARN|ERROR)\s+(\S+: .*?)(?:\s+\w+=.*)?$")


def log(msg):
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default="target/release/switchboard")
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 600)),
                    help="load duration D (default 600, env SOAK_SECONDS)")
    ap.add_argument("--warmup-seconds", type=float, help="default max(30, 0.15·D)")
    ap.add_argument("--redis-restart", choices=["keep", "empty"], default="keep")
    ap.add_argument("--redis-down-seconds", type=float, default=3.0)
    ap.add_argument("--node-down-seconds", type=float, default=15.0)
    ap.add_argument("--settle-seconds", type=float, default=30.0)
    ap.add_argument("--users", type=int, default=120)
    ap.add_argument("--rooms", type=int, default=4)
    ap.add_argument("--rooms-per-user", type=int, default=2)
    ap.add_argument("--api-rate", type=float, default=40.0, help="/v1/publish to user channels per s")
    ap.add_argument("--ws-user-rate", type=float, default=10.0, help="client publishes to user channels per s")
    ap.add_argument("--ws-room-rate", type=float, default=10.0, help="client publishes to rooms per s")
    ap.add_argument("--lifetime", default="3,20", help="a connection lives MIN,MAX seconds")
    ap.add_argument("--pause", default="0.2,3", help="a user is offline MIN,MAX seconds between connections")
    ap.add_argument("--scrape-seconds", type=float, default=0.0,
                    help="GET every node's /metrics this often, as Prometheus would (default 0: "
                         "never until the end, so memory that only a scrape frees shows)")
    ap.add_argument("--growth-limit", type=float, default=0.05, help="RSS/fds growth allowed (0.05 = 5 %%)")
    ap.add_argument("--out", default="target/artifacts/soak")
    ap.add_argument("--command", default="", help="the command line shown in the report")
    a = ap.parse_args()
    a.warmup = a.warmup_seconds if a.warmup_seconds is not None else max(30.0, 0.15 * a.seconds)
    a.lifetime = tuple(float(x) for x in a.lifetime.split(","))
    a.pause = tuple(float(x) for x in a.pause.split(","))
    return a


class Soak:
    def __init__(self, a):
        self.a = a
        self.phase = "start"
        self.events = []
        self.t0 = time.monotonic()
        run = "".join(random.choices(string.ascii_lowercase + string.digits, k=6))
        self.run_id = run
        rooms = [f"room:soak-{run}-{k}" for k in range(a.rooms)]
        exp = int(time.time()) + int(a.seconds) + 3600
        self.users = []
        for i in range(a.users):
            uid = f"soak-{run}-u{i}"
            token = jwt_hs256(DEV_SECRET, {"sub": uid, "exp": exp, "channels": ["room:*"],
                                           "publish": ["room:*", "user:*"]})
            self.users.append(User(uid, token, random.sample(rooms, min(a.rooms_per_user, a.rooms))))
        self.ledger = Ledger()
        self.cluster = Cluster(binary=a.binary, nodes=3, args=["--history", "room:*=100/3600"],
                               redis_args=AOF if a.redis_restart == "keep" else [])

    def now(self):
        return time.monotonic() - self.t0

    def event(self, what, phase=None):
        self.events.append((self.now(), what))
        if phase:
            self.phase = phase
        log(what)

    def sleep_until(self, t):
        while self.now() < t:
            time.sleep(min(1.0, t - self.now()))
            self.check_alive()

    def check_alive(self):
        for n in self.cluster.nodes:
            if n.proc and n.proc.poll() is not None and not getattr(n, "killed", False):
                raise RuntimeError(f"{n.node_id} exited with {n.proc.returncode}")

    def procs(self):
        out = {n.node_id: (n.pid if n.proc and n.proc.poll() is None else None) for n in self.cluster.nodes}
        r = self.cluster.redis_proc
        out["redis"] = r.pid if r and r.poll() is None else None
        return out

    def checkpoint(self, name):
        """Every client closes; 3 s later the median of 5 samples, 1 s apart."""
        self.event(f"checkpoint {name}: every client closes", phase=f"checkpoint {name}")
        self.api.pause()
        self.pool.publishing = False
        self.pool.hold()
        deadline = time.monotonic() + 15
        while self.pool.active() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.pool.active():
            log(f"checkpoint {name}: {self.pool.active()} connections still open after 15 s")
        time.sleep(3)
        taken = []
        for _ in range(5):
            taken.append(self.sampler.sample())
            time.sleep(1)
        cp = checkpoint(taken)
        self.event(f"checkpoint {name}: " + ", ".join(
            f"{k} {v['rss_kb'] / 1024:.1f} MiB {v['fds']} fds" for k, v in cp.items()))
        return cp

    def resume(self):
        self.pool.resume()
        self.pool.publishing = True
        self.api.on.set()
        self.phase = "load"

    def run(self):
        a = self.a
        self.cluster.start()
        for n in self.cluster.nodes:
            n.killed = False
        self.t0 = time.monotonic()
        self.event(f"cluster up: Redis {self.cluster.redis_url} ({a.redis_restart}), nodes "
                   + ", ".join(f"{n.node_id} {n.public}" for n in self.cluster.nodes), phase="warm-up")
        self.sampler = Sampler(self.procs, self.t0, phase=lambda: self.phase).start()
        nodes = self.cluster.nodes
        self.pool = Pool(self.users, self.ledger, lambda: [n.public for n in nodes],
                         lifetime=a.lifetime, pause=a.pause, ws_user_rate=a.ws_user_rate,
                         ws_room_rate=a.ws_room_rate).start()
        self.scraper = Scraper(nodes, a.scrape_seconds).start()
        self.api = ApiPublisher(self.users, self.ledger, lambda: [n.internal for n in nodes],
                                DEV_API_KEY, a.api_rate)
        self.sleep_until(3)
        self.api.start()
        self.pool.publishing = True
        self.sleep_until(a.warmup)
        self.cp_a = self.checkpoint("A")
        self.resume()

        self.sleep_until(0.40 * a.seconds)
        self.cluster.kill_redis()
        self.event("Redis SIGKILLed", phase="Redis down")
        time.sleep(a.redis_down_seconds)
        pid = self.cluster.restart_redis()
        self.event(f"Redis restarted (pid {pid}, {'AOF kept' if a.redis_restart == 'keep' else 'empty'})",
                   phase="load")

        self.sleep_until(0.60 * a.seconds)
        victim = nodes[2]
        victim.killed = True
        self.cluster.kill(2)
        self.event(f"{victim.node_id} SIGKILLed", phase=f"{victim.node_id} down")
        time.sleep(a.node_down_seconds)
        self.cluster.start_node(2)
        victim.killed = False
        self.event(f"{victim.node_id} restarted (pid {victim.pid}) and ready", phase="load")

        self.sleep_until(0.80 * a.seconds)
        self.cp_c = self.checkpoint("C")
        self.resume()

        self.sleep_until(a.seconds)
        self.api.pause()
        self.pool.settle()
        self.event("publishing stopped; every user reconnects and catches up", phase="settle")
        deadline = time.monotonic() + a.settle_seconds
        while time.monotonic() < deadline:
            if (self.ledger.outstanding() == 0 and self.pool.unanswered == 0
                    and self.pool.active() == len(self.users)):
                break
            time.sleep(1)
        self.event(f"settled: {self.ledger.outstanding()} acknowledged messages not delivered")
        self.check_alive()
        self.cp_b = self.checkpoint("B")
        self.scraper.stop()
        self.metrics = {n.node_id: series(scrape(n.internal), END_METRICS) for n in nodes}
        self.pool.stop()
        self.api.stop()
        self.sampler.stop()

    def keep_logs(self):
        dst = os.path.join(self.a.out, "logs")
        shutil.rmtree(dst, ignore_errors=True)
        os.makedirs(dst)
        for path in glob.glob(os.path.join(self.cluster.dir, "*.log")):
            shutil.copy(path, dst)
        return dst

    def log_findings(self, logs):
        """Warnings, errors and panics of each node log, counted by level and message (the
        fields after the message left out)."""
        out = {}
        for path in sorted(glob.glob(os.path.join(logs, "node-*.log"))):
            found = {}
            with open(path, errors="replace") as f:
                for line in f:
                    m = LOG_LINE.match(ANSI.sub("", line))
                    if m and m.group(1) in ("WARN", "ERROR"):
                        key = f"{m.group(1)} {m.group(2)}"
                    elif "panicked" in line:
                        key = "panicked: " + ANSI.sub("", line).strip()[:120]
                    else:
                        continue
                    found[key] = found.get(key, 0) + 1
            out[os.path.basename(path)] = found
        return out


def interrupted(*_):
    raise KeyboardInterrupt


# Counters read from every node's /metrics at the end (after checkpoint B).
END_METRICS = ("switchboard_connections_total", "switchboard_disconnects_total",
               "switchboard_backplane_reconnects_total", "switchboard_recovery_total",
               "switchboard_handshake_rejected_total")


def scrape(internal):
    """A node's /metrics text, or None."""
    try:
        with urllib.request.urlopen(f"http://{internal}/metrics", timeout=5) as r:
            return r.read().decode()
    except OSError:
        return None


def series(text, names):
    """{series: value} of the named metrics with a value other than 0."""
    out = {}
    for line in (text or "").splitlines():
        if line.startswith("#") or not line.startswith(names):
            continue
        key, _, value = line.rpartition(" ")
        if float(value) != 0:
            out[key] = float(value)
    return out


class Scraper:
    """GETs every live node's /metrics every `every` seconds (Prometheus's part)."""

    def __init__(self, nodes, every):
        self.nodes, self.every = nodes, every
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)

    def start(self):
        if self.every > 0:
            self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self):
        while not self._stop.wait(self.every):
            for n in self.nodes:
                if n.proc and n.proc.poll() is None and scrape(n.internal) is not None:
                    self.count += 1


def revision():
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main():
    a = parse_args()
    os.makedirs(a.out, exist_ok=True)
    soak = Soak(a)
    # SIGTERM (make interrupted) ends the run like Ctrl-C: the cluster is stopped either way.
    signal.signal(signal.SIGTERM, interrupted)
    try:
        soak.run()
    except BaseException as e:  # the run itself failed or was interrupted: keep the logs
        log(f"the run failed: {e!r}")
        logs = soak.keep_logs()
        soak.cluster.stop()
        log(f"logs in {logs}")
        return 2
    logs = soak.keep_logs()
    soak.cluster.stop()

    outcome, lost = soak.ledger.outcome()
    counts = dict(soak.ledger.counts)
    names = [n.node_id for n in soak.cluster.nodes] + ["redis"]
    rows = growth(soak.cp_a, soak.cp_b, names, a.growth_limit)
    after = growth(soak.cp_c, soak.cp_b, names, a.growth_limit)
    results = report.checks(outcome, counts, rows, a.redis_restart)
    every = max(10.0, round(a.seconds / 20 / 10) * 10)
    meta = {"command": a.command or " ".join(sys.argv), "revision": revision(),
            "date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": f"{os.cpu_count()} CPUs, "
            f"load average at the end {os.getloadavg()[0]:.2f}",
            "load": f"{a.users} users (one connection at a time, lifetime {a.lifetime[0]:g}–{a.lifetime[1]:g} s, "
                    f"offline {a.pause[0]:g}–{a.pause[1]:g} s), {a.rooms} rooms × {a.rooms_per_user} per user "
                    f"(history room:*=100/3600), {a.api_rate:g}/s API + {a.ws_user_rate:g}/s client publishes "
                    f"to user channels, {a.ws_room_rate:g}/s to rooms",
            "duration": f"{a.seconds:g} s of load, warm-up {a.warmup:g} s, run {soak.now():.0f} s",
            "metrics scraped": f"every {a.scrape_seconds:g} s ({soak.scraper.count} scrapes)" if a.scrape_seconds
                               else "never during the run (once at the end)",
            "Redis": "AOF appendfsync always, SIGKILL + restart with its data" if a.redis_restart == "keep"
                     else "no persistence, SIGKILL + restart empty"}
    md = report.render(meta, outcome, counts, rows, soak.sampler.samples, names, soak.events, results, every, after)
    md += "\n### Node counters at the end (from /metrics, after checkpoint B; node-3's since its restart)\n\n"
    for node, found in soak.metrics.items():
        md += f"- {node}: " + ", ".join(f"{k.replace('switchboard_', '')} {v:g}" for k, v in sorted(found.items())) + "\n"
    findings = soak.log_findings(logs)
    md += "\n### Node log warnings and errors (count, message)\n\n"
    for node, found in findings.items():
        md += f"- {node}: " + ("; ".join(f"{v}× {k}" for k, v in sorted(found.items(), key=lambda x: -x[1]))
                               or "none") + "\n"
    if lost:
        md += "\n### Lost (user, epoch, offset, seq, via, delivered instead at), first 20\n\n"
        md += "\n".join(f"- {x}" for x in lost[:20]) + "\n"
    print(md)
    with open(os.path.join(a.out, "soak.md"), "w") as f:
        f.write(md)
    with open(os.path.join(a.out, "soak.json"), "w") as f:
        json.dump({"meta": meta, "events": soak.events, "outcome": outcome, "counts": counts,
                   "growth": rows, "checkpoints": {"A": soak.cp_a, "C": soak.cp_c, "B": soak.cp_b},
                   "growth_after_restarts": after,
                   "checks": results, "lost": lost[:1000], "log_findings": findings,
                   "metrics_at_end": soak.metrics,
                   "samples": soak.sampler.samples}, f, indent=1)
    log(f"report in {a.out}/soak.md, data in {a.out}/soak.json, logs in {logs}")
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
