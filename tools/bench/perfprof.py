"""Profiles: `perf record` on the gateways and Redis during one W2 API run (same shape as the
W2 runs: `direct --via api`, the configured rate), for the baseline and the current build,
and the "Profiles" section of BENCHMARKS.md: the hottest functions by self time
(`perf report --no-children`) of the gateways together and of Redis, before and after.

    perf record -F 999 --call-graph dwarf,8192 -e cpu-clock -N -p <gateway pids>,<redis pid> \
        -- sleep S
    perf report --stdio --no-children -g none --percentage relative --pid <pids> \
        --sort dso,sym --percent-limit 2

cpu-clock because this VM has no hardware counters; -N keeps binaries out of ~/.debug; the
recording starts at the loadgen's `ready` and lasts `seconds` (inside the sending phase).
Call graphs: the release profile has no frame pointers, so `-g` stacks end at libc's syscall
wrappers; DWARF unwinding from the .eh_frame that Rust always emits gives readable stacks of
the release build as it is (function names; inlined functions fold into their callers). The
self-time tables do not need them; the callers view of the gateways is kept next to the data
(perf-<system>-gateways-callers.txt, `--children --no-inline`).
This run's CPU figures are not used anywhere (perf costs CPU itself). Raw files stay in the
results directory: perf-<system>.data and perf-<system>-<group>{,-all,-own}.txt (≥ 2 %,
every entry, inside the gateway binary only).
"""

import os
import re
import shutil
import subprocess

from . import direct

EVENTS_RE = re.compile(r"^# Event count \(approx\.\): (\d+)")
LINE_RE = re.compile(r"^\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*?)\s*$")
NODSO_RE = re.compile(r"^\s*([\d.]+)%\s+\[(.)\]\s+(.*?)\s*$")  # with --dsos: no dso column
FREQ = 999
PERCENT_LIMIT = 2
TOP = 12


def unavailable():
    """None when perf can sample other processes here, else the reason."""
    if not shutil.which("perf"):
        return "perf is not installed (apt-get install linux-perf)"
    try:
        with open("/proc/sys/kernel/perf_event_paranoid") as f:
            paranoid = int(f.read())
    except (OSError, ValueError):
        paranoid = 2
    if os.geteuid() != 0 and paranoid > 1:
        r = subprocess.run(["sudo", "-n", "sysctl", "-w", "kernel.perf_event_paranoid=1"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return (f"kernel.perf_event_paranoid is {paranoid} and this user cannot lower it "
                    "(as root: sysctl kernel.perf_event_paranoid=1)")
    return None


def parse_report(text, dso=None):
    """(cpu-clock nanoseconds sampled, [(percent, dso, symbol)…]) from `perf report --stdio
    --sort dso,sym` (with --dsos X the lines have no dso column: pass dso=X)."""
    events, top = None, []
    for line in text.splitlines():
        m = EVENTS_RE.match(line)
        if m:
            events = int(m.group(1))
            continue
        if line.startswith("#") or not line.strip():
            continue
        m = LINE_RE.match(line)
        if m:
            top.append((float(m.group(1)), m.group(2), m.group(4)))
            continue
        m = NODSO_RE.match(line)
        if m and dso:
            top.append((float(m.group(1)), dso, m.group(3)))
    return events, top


def by_dso(entries):
    """[(percent, dso, None)…] summed over every symbol of each object, largest first.
    (`perf report --sort dso` with --pid drops the kernel's samples in perf 6.1.)"""
    sums = {}
    for pct, dso, _ in entries:
        sums[dso] = sums.get(dso, 0.0) + pct
    return sorted(((round(v, 2), k, None) for k, v in sums.items()), reverse=True)


def report(data, pids, out_txt, sort="dso,sym", dso=None, limit=PERCENT_LIMIT):
    """`perf report` of the samples of `pids` (percent of those samples; with `dso`: of the
    samples inside that object only), saved with its command line to out_txt."""
    cmd = ["perf", "report", "-i", data, "--stdio", "--no-children", "-g", "none",
           "--percentage", "relative", "--pid", ",".join(map(str, pids)), "--sort", sort,
           "--percent-limit", str(limit)] + (["--dsos", dso] if dso else [])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    with open(out_txt, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n" + r.stdout)
    return " ".join(cmd), r.stdout


def callers(data, pids, out_txt):
    """The callers view (inclusive time, call chains ≥ 0.5 %) saved for reading; not parsed."""
    cmd = ["perf", "report", "-i", data, "--stdio", "--children", "--no-inline", "--pid",
           ",".join(map(str, pids)), "--sort", "sym", "--percent-limit", "5",
           "-g", "caller,0.5,callee,function,percent"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    with open(out_txt, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n" + r.stdout)


def run(ctx, sut, cfg):
    """One W2 API run on `sut` with perf attached; returns the parsed profiles."""
    why = unavailable()
    if why:
        return {"skipped": why}
    data = os.path.join(ctx.outdir, f"perf-{sut.name}.data")
    pids = list(sut.server_pids) + list(sut.redis_pids)
    rec = ["perf", "record", "-F", str(FREQ), "--call-graph", "dwarf,8192", "-e", "cpu-clock",
           "-N", "-p",
           ",".join(map(str, pids)), "-o", data, "--", "sleep", str(cfg["seconds"])]
    box = {}

    def on_ready(_lg):
        ctx.log(f"profile {sut.name}: perf record for {cfg['seconds']} s")
        r = subprocess.run(rec, capture_output=True, text=True, timeout=cfg["seconds"] + 120)
        box["rc"], box["stderr"] = r.returncode, r.stderr.strip()[-600:]

    w2 = direct.one(ctx, sut, cfg["rate"], cfg["duration"], via="api", pairs=cfg["pairs"],
                    tag="-perf", on_ready=on_ready)
    out = {"record_cmd": " ".join(rec), "record_rc": box.get("rc"),
           "record_stderr": box.get("stderr"), "data": os.path.relpath(data),
           "rate": cfg["rate"], "w2": {k: w2.get(k) for k in ("delivered", "lost", "p99_ms")},
           "groups": {}}
    if box.get("rc") != 0 or not os.path.exists(data):
        out["skipped"] = f"perf record failed ({box.get('rc')}): {box.get('stderr')}"
        return out
    binary = os.path.basename(sut.binary)
    for group, gp in (("gateways", sut.server_pids), ("redis", sut.redis_pids)):
        base = os.path.join(ctx.outdir, f"perf-{sut.name}-{group}")
        cmd, text = report(data, gp, base + ".txt")
        events, top = parse_report(text)
        _, every = parse_report(report(data, gp, base + "-all.txt", limit=0)[1])
        g = {"cpu_s": events / 1e9 if events else None, "top": top, "dsos": by_dso(every),
             "txt": os.path.relpath(base + ".txt"), "report_cmd": cmd}
        if group == "gateways":
            # The gateway's own code only: percent of the samples inside its binary.
            _, g["own"] = parse_report(report(data, gp, base + "-own.txt", dso=binary)[1],
                                       dso=binary)
            g["binary"] = binary
            callers(data, gp, base + "-callers.txt")
        out["groups"][group] = g
    return out


def _sym(s, width=90):
    s = s.replace("|", "\\|")
    return s if len(s) <= width else s[:width - 1] + "…"


def _table(cols, key, out):
    """Rank-aligned columns (one per system) of (percent, function, object) rows."""
    out += ["| # | " + " | ".join(f"{k} % | {k} function (object)" for k, _ in cols) + " |",
            "|---|" + "---|---|" * len(cols)]
    n = max((len(g.get(key) or []) for _, g in cols), default=0)
    for i in range(min(n, TOP)):
        cells = []
        for _, g in cols:
            top = g.get(key) or []
            if i < len(top):
                pct, dso, sym = top[i]
                cells.append(f"{pct:.1f} | `{_sym(sym)}` ({dso})")
            else:
                cells.append(" | ")
        out.append(f"| {i + 1} | " + " | ".join(cells) + " |")


def section(profiles):
    out = ["## Profiles (perf, W2 API)", ""]
    if not profiles:
        return out + ["Not run.", ""]
    if not profiles.get("ok", True):
        return out + [f"**Failed:** {profiles.get('error')}", ""]
    systems = [(k, profiles[k]) for k in ("baseline", "current") if profiles.get(k)]
    for k, p in systems:
        if p.get("skipped"):
            out.append(f"- {k}: **not profiled** — {p['skipped']}")
    done = [(k, p) for k, p in systems if not p.get("skipped")]
    if not done:
        return out + [""]
    first = done[0][1]
    out += [f"Self time (`perf report --no-children`) during `direct --via api` at "
            f"{first['rate']:,} msg/s, sampled at {FREQ} Hz on cpu-clock; % of each group's "
            f"samples, entries ≥ {PERCENT_LIMIT} %. Release profile as built: symbols are "
            "present (not stripped); there are no frame pointers, so `perf record -g` stacks "
            "end at libc's syscall wrappers — recorded with `--call-graph dwarf` instead, which "
            "unwinds through the .eh_frame Rust always emits: readable stacks by function "
            "(inlined functions fold into their callers; line numbers would need "
            "`debug = \"line-tables-only\"` in `[profile.release]`, frame-pointer stacks "
            "`-C force-frame-pointers=yes`). The gateways' callers view is kept next to the "
            "data (`perf-<system>-gateways-callers.txt`). Redis is Debian's stripped build "
            "(`redis-server` is a link to `redis-check-rdb`, the object named below): only its "
            "exported functions have names.", ""]
    for group, title in (("gateways", "Gateways (3 processes together)"), ("redis", "Redis")):
        cols = [(k, p["groups"].get(group) or {}) for k, p in done]
        out += [f"### {title}", ""]
        _table(cols, "top", out)
        out += [""]
        for k, g in cols:
            objs = ", ".join(f"{d} {pct:.0f} %" for pct, d, _ in (g.get("dsos") or [])[:6])
            out.append(f"- {k}: {g['cpu_s'] or 0:.2f} CPU-s sampled; by object: {objs or '—'}.")
        out.append("")
        if group == "gateways" and any(g.get("own") for _, g in cols):
            out += ["Inside the gateway binary only (% of the samples in its own code and "
                    f"statically linked crates, entries ≥ {PERCENT_LIMIT} %):", ""]
            _table(cols, "own", out)
            out.append("")
    out += ["Raw: " + ", ".join(f"`{p['data']}`" for _, p in done) + " and the `perf report` "
            "outputs next to them (`perf-<system>-<group>[-all|-own|-callers].txt`).", ""]
    return out
