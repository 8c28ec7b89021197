"""RSS and open file descriptors of the soak's processes, sampled from /proc, and the
flatness verdict over them.

`Sampler` reads the VmRSS and counts the open fds (tools/procstat.py) of every process the
runner names (gateway nodes and Redis; pids change across restarts, so it asks each time)
about once a second. `growth` and `table` are pure functions (tested in test_soak.py).
"""

import threading
import time

from ..procstat import fd_count, rss_kb


class Sampler:
    """A thread that samples `procs()` -> {name: pid} every `interval` seconds; each sample is
    {"t": seconds since `t0`, "phase": phase(), "name": {"rss_kb", "fds", "pid"}, ...}."""

    def __init__(self, procs, t0, interval=1.0, phase=lambda: ""):
        self.procs, self.t0, self.interval, self.phase = procs, t0, interval, phase
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(5)

    def sample(self):
        s = {"t": round(time.monotonic() - self.t0, 1), "phase": self.phase(), "procs": {}}
        for name, pid in self.procs().items():
            if pid is None:
                continue
            rss, fds = rss_kb(pid), fd_count(pid)
            if rss is not None and fds is not None:
                s["procs"][name] = {"pid": pid, "rss_kb": rss, "fds": fds}
        return s

    def _run(self):
        while not self._stop.is_set():
            self.samples.append(self.sample())
            self._stop.wait(self.interval)


def checkpoint(samples):
    """The median RSS and fds of each process over a few samples (a quiet moment)."""
    out = {}
    names = {n for s in samples for n in s["procs"]}
    for name in sorted(names):
        vals = [s["procs"][name] for s in samples if name in s["procs"]]
        if not vals:
            continue
        rss = sorted(v["rss_kb"] for v in vals)
        fds = sorted(v["fds"] for v in vals)
        out[name] = {"pid": vals[-1]["pid"], "rss_kb": rss[len(rss) // 2], "fds": fds[len(fds) // 2]}
    return out


def growth(before, after, names, limit=0.05):
    """Per process in `names`: RSS and fds growth from checkpoint `before` to `after`, and
    whether it is within `limit` (a fraction). A process whose pid changed between the two
    was restarted and cannot be judged: it is reported as "restarted" and does not fail."""
    rows = []
    for name in names:
        b, a = before.get(name), after.get(name)
        if not b or not a:
            rows.append({"name": name, "verdict": "missing", "ok": False})
            continue
        if b["pid"] != a["pid"]:
            rows.append({"name": name, "verdict": "restarted", "ok": True})
            continue
        rss_g = (a["rss_kb"] - b["rss_kb"]) / b["rss_kb"]
        fds_g = (a["fds"] - b["fds"]) / b["fds"]
        ok = rss_g <= limit and fds_g <= limit
        rows.append({"name": name, "rss_before_kb": b["rss_kb"], "rss_after_kb": a["rss_kb"],
                     "rss_growth": rss_g, "fds_before": b["fds"], "fds_after": a["fds"],
                     "fds_growth": fds_g, "ok": ok, "verdict": "flat" if ok else "GREW"})
    return rows


def table(samples, names, every=30.0):
    """A node × time table (markdown): one row about every `every` seconds (the sample
    nearest each mark) plus the last one; RSS in MiB and fds per process."""
    if not samples:
        return ""
    marks, t, last = [], 0.0, samples[-1]["t"]
    while t < last:
        marks.append(t)
        t += every
    marks.append(last)
    rows, used = [], set()
    for m in marks:
        s = min(samples, key=lambda x: abs(x["t"] - m))
        if id(s) in used:
            continue
        used.add(id(s))
        rows.append(s)
    head = "| t (s) | phase | " + " | ".join(f"{n} RSS MiB | {n} fds" for n in names) + " |"
    sep = "|---:|---|" + "---:|---:|" * len(names)
    lines = [head, sep]
    for s in rows:
        cells = []
        for n in names:
            p = s["procs"].get(n)
            cells += [f"{p['rss_kb'] / 1024:.1f}", str(p["fds"])] if p else ["—", "—"]
        lines.append(f"| {s['t']:.0f} | {s['phase']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
