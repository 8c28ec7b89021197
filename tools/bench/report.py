"""BENCHMARKS.md from the runner's results dict (see bench.py): header (date, git revision,
machine, command, baseline), the hot-path figures before → after (hotpath.py), the other
figure | target | measured | met? rows (with W6's), the measurement floor (floor.py),
W6 (w6.py), the profiles (perfprof.py), per-workload details of both builds, the
side-by-side table with the peers, and how each figure is measured. Used by bench.py;
`python3 -m tools.bench.report target/bench/latest/results.json [BENCHMARKS.md]` re-renders a
saved run.
"""

import json
import sys

from . import direct
from . import floor
from . import hotpath
from . import perfprof
from . import w6

from .fmt import KIB, kib, met, mib, msf, num  # noqa: F401  (report_details imports them)


def _fail(w):
    if w is None:
        return "not run"
    return f"FAILED: {w.get('error', '?')}"


def _no(w):
    return "**no**" if w is not None else "—"


def _fixed(w2, rate):
    for r in (w2 or {}).get("fixed", []):
        if r["rate"] == rate:
            return r
    return None


def _sat_run(w2):
    """The run at the saturation rate (highest passing), else the most efficient passing run."""
    sat = (w2 or {}).get("saturation") or {}
    for r in sat.get("runs", []):
        if r["pass"] and r["rate"] == sat.get("rate"):
            return r
    return direct.best_efficiency(w2 or {})


def _run_note(r):
    bad = [f"{k}={r[k]}" for k in ("lost", "send_failed", "unconfirmed") if r.get(k)]
    return f" ({', '.join(bad)})" if bad else ""


def rows(res):
    out = []
    w1 = res.get("W1")
    if w1 and w1.get("ok"):
        t, s, u = w1["total_bytes_per_conn"], w1["total_with_slab_bytes_per_conn"], \
            w1["user_bytes_per_conn"]
        out.append(("W1 memory per idle connection: gateway RSS + kernel TCP buffers",
                    "≤ 12 KiB (aim ≤ 8 KiB)",
                    f"{kib(t)} (RSS {kib(u)} + TCP {kib(w1['kernel_tcp_bytes_per_conn'])})",
                    met(t is not None and t <= 12 * KIB, t is not None and t <= 8 * KIB)))
        out.append(("W1 the same plus socket slab objects (tcp_sock, file, epoll item)",
                    "≤ 12 KiB (aim ≤ 8 KiB)",
                    f"{kib(s)} (slab {kib(w1['kernel_slab_bytes_per_conn'])})",
                    met(s is not None and s <= 12 * KIB, s is not None and s <= 8 * KIB)))
        out.append(("W1 idle connections held per node", "≥ 10,000",
                    num(w1["max_per_node"]), met(w1["max_per_node"] >= 10000)))
    else:
        out.append(("W1 memory per idle connection", "≤ 12 KiB (aim ≤ 8 KiB)", _fail(w1), _no(w1)))
    for key, name in (("W2_api", "API"), ("W2_ws", "WebSocket publish"),
                      ("W2_batch", "API, /v1/batch")):
        w = res.get(key)
        if not (w and w.get("ok")):
            out.append((f"W2 ({name})", "", _fail(w), _no(w)))
            continue
        if key == "W2_batch":  # fixed rates only: a full batch of 100 takes tens of ms
            for r in w.get("fixed", []):
                v = r["msgs_per_server_cpu_s"]
                out.append((f"W2 messages per server CPU-second ({name} × {w.get('batch')}, "
                            f"gateways + Redis, at {num(r['rate'])} msg/s)", "≥ 40k (aim ≥ 70k)",
                            num(v) + _run_note(r),
                            met(v is not None and v >= 40000, v is not None and v >= 70000)))
            continue
        r = _fixed(w, 2000)
        if r:
            out.append((f"W2 p99 at 2,000 msg/s ({name})", "≤ 1 ms",
                        msf(r["p99_ms"]) + _run_note(r),
                        met(r["pass"] and r["p99_ms"] <= 1.0)))
        sat = w.get("saturation") or {}
        out.append((f"W2 saturation ({name})", "(reported)",
                    f"{num(sat.get('rate'))} msg/s — {sat.get('stopped', '')}", "—"))
        e = _sat_run(w)
        v = e["msgs_per_server_cpu_s"] if e else None
        out.append((f"W2 messages per server CPU-second ({name}, gateways + Redis, "
                    f"at {num(e['rate']) if e else '—'} msg/s)", "≥ 40k (aim ≥ 70k)", num(v),
                    met(v is not None and v >= 40000, v is not None and v >= 70000)))
        h = w.get("half")
        if h:
            out.append((f"W2 p99 at half of saturation, {num(h['rate'])} msg/s ({name})",
                        "≤ 5 ms (aim ≤ 2 ms)", msf(h["p99_ms"]) + _run_note(h),
                        met(h["pass"] and h["p99_ms"] <= 5, h["p99_ms"] <= 2)))
    w3 = res.get("W3")
    if w3 and w3.get("ok"):
        v = w3["last_p99_ms"]
        ok = v is not None and v <= 150 and not w3.get("lost")
        out.append((f"W3 fan-out to {num(w3['subscribers'])} subscribers: time until the last "
                    "has it, p99", "≤ 150 ms (aim ≤ 50 ms)",
                    f"{msf(v)} (p50 {msf(w3['last_p50_ms'])}, max {msf(w3['last_max_ms'])}"
                    f", lost {w3.get('lost')})", met(ok, v is not None and v <= 50)))
    else:
        out.append(("W3 fan-out to 10k subscribers", "≤ 150 ms (aim ≤ 50 ms)", _fail(w3), _no(w3)))
    w4 = res.get("W4")
    if w4 and w4.get("ok"):
        v = w4["connects_per_gateway_cpu_s"]
        out.append(("W4 JWT connects per gateway CPU-second (per core)", "≥ 5,000",
                    f"{num(v)} ({num(w4['connect_per_s_wall'])}/s wall, "
                    f"{num(w4['established'])} of {num(w4['connections'])})",
                    met(v is not None and v >= 5000 and not w4.get("failed"))))
        out.append(("W4 listen queue overflows + drops (TcpExt)", "0",
                    num(w4["listen_overflows"]), met(w4["listen_overflows"] == 0)))
    else:
        out.append(("W4 connect storm", "≥ 5,000/s per core, 0 overflows", _fail(w4), _no(w4)))
    w5 = res.get("W5")
    if w5 and w5.get("ok"):
        out.append(("W5 slow consumers closed with 4008", f"{w5['slow']} of {w5['slow']}",
                    f"{w5['slow_closed_4008']} (closes {w5['with-slow'].get('slow_closes')})",
                    met(w5["slow_closed_4008"] == w5["slow"])))
        pr = w5["p99_ratio"]
        out.append(("W5 normal subscribers' p99 with / without slow consumers",
                    "not affected (≤ 2×)",
                    f"{pr}× ({msf(w5['with-slow']['p99_ms'])} / {msf(w5['baseline']['p99_ms'])})",
                    met(pr is not None and pr <= 2.0)))
        out.append(("W5 extra gateway peak RSS caused by the slow consumers",
                    f"≤ slow × 2 × 4 MiB = {mib(w5['rss_bound'])}", mib(w5["extra_peak_rss"]),
                    met(w5["extra_peak_rss"] <= w5["rss_bound"])))
    else:
        out.append(("W5 slow consumers", "bounded, 4008, p99 unaffected", _fail(w5), _no(w5)))
    return out


def summary_table(res, with_hotpath=False):
    lines = ["| figure | target | measured | met? |", "|---|---|---|---|"]
    more = hotpath.rows(res) if with_hotpath else []
    if "W6" in res:
        more += w6.rows(res["W6"])
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows(res) + more]
    return "\n".join(lines)


def render(res):
    from . import report_details as d
    m = res["meta"]
    mc = m["machine"]
    out = ["# Switchboard benchmarks", ""]
    if m.get("quick"):
        out += ["> **Quick run (`BENCH_QUICK=1`): smaller sizes for development — not the "
                "reference figures.**", ""]
    out += [
        f"- Date: {m['date']} (took {m.get('elapsed_s', 0) / 60:.1f} min)",
        f"- Git revision: `{m['git']}`",
        f"- Machine: {mc['nproc']} CPUs ({mc['cpu_model']}), {mc['ram_gib']} GiB RAM, "
        f"Linux {mc['kernel']}; load average at start {mc['loadavg_at_start']}",
        f"- Command: `{m['command']}`",
        "- Before (baseline): " + (f"`{m['baseline']['binary']}` ({m['baseline']['version']}, "
                                   f"sha256 {m['baseline']['sha256'][:12]})"
                                   if m.get("baseline") else "none in this run"),
        f"- Noise: the whole box was {100 * m.get('box_cpu', {}).get('busy', 0):.0f} % busy "
        f"over the run (steal {100 * m.get('box_cpu', {}).get('steal', 0):.1f} %; load average "
        f"{mc['loadavg_at_start']} at start, {m.get('loadavg_at_end', '?')} at the end; "
        f"{m.get('tcp_inuse_at_start', '?')} TCP sockets of other processes open at the start)."
        " Other engineers' builds and tests share this machine: treat absolute CPU and latency "
        "figures with care; the side-by-side ratios come from the same conditions.",
        "- Everything runs on this one box: Redis, the 3 gateway nodes and the load generator "
        "(`switchboard-loadgen`) share its CPUs, so the loadgen's own CPU use competes with "
        "the servers; CPU figures count only the server processes (gateways or peer servers) "
        "and Redis.",
        f"- Raw results (not committed): `{m['results_dir']}/` — `results.json`, one JSON "
        "+ log per loadgen run, the perf recordings.",
        "",
    ]
    out += hotpath.section(res)
    out += ["## Other targets (the original benchmark plan)", "",
            "Where a figure is also in the hot-path table above, that table's target is the "
            "newer one.", "", summary_table(res), ""]
    out += floor.section(res.get("floor"))
    if "W6" in res or "W6" in m.get("only", []):
        out += w6.section(res.get("W6"))
    if "profiles" in res:
        out += perfprof.section(res.get("profiles"))
    out += d.details(res)
    return "\n".join(out) + "\n"


def with_history(text):
    """The report plus the hand-kept before/after notes (history.md) at its end."""
    import os
    history = os.path.join(os.path.dirname(os.path.abspath(__file__)), "history.md")
    if os.path.exists(history):
        with open(history) as f:
            text = text.rstrip("\n") + "\n\n" + f.read()
    return text


if __name__ == "__main__":
    # python3 -m tools.bench.report RESULTS.json [OUT.md]: re-render a saved run (to stdout without OUT.md).
    with open(sys.argv[1]) as f:
        text = with_history(render(json.load(f)))
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w") as f:
            f.write(text)
    else:
        print(text)
