"""The load generator's measurement floor on this box: `switchboard-loadgen selftest` (its
scheduling error, a loopback round trip through its own client stack against an in-process
reflector, its CPU per message), run once before the workloads, and the short
"Measurement floor" section of BENCHMARKS.md. Self-contained: bench.py calls run(), report.py
calls section().
"""

import json
import os
import subprocess

from .common import q


def run(ctx):
    json_path, log_path = ctx.paths("floor-selftest")
    cmd = [ctx.loadgen, "selftest", "--quiet", "--json", json_path]
    ctx.log("measurement floor: " + " ".join(cmd[1:]))
    with open(log_path, "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=120).returncode
    if not os.path.exists(json_path):
        raise RuntimeError(f"selftest exited {rc} without a result (see {log_path})")
    with open(json_path) as f:
        result = json.load(f)
    return {"rc": rc, "cmd": " ".join(cmd), "result": result}


def _us(x):
    if x is None:
        return "—"
    return f"{x} µs" if x < 1000 else f"{x / 1000:.1f} ms" if x < 10000 else f"{x / 1000:.0f} ms"


def section(fl):
    out = ["## Measurement floor (the load generator itself)", ""]
    if not fl:
        return out + ["Not run.", ""]
    if not fl.get("ok", True):
        return out + [f"**Failed:** {fl.get('error')}", ""]
    r = fl["result"]
    slack = r.get("pacer_slack_ns")
    out += [f"`switchboard-loadgen selftest` on this box before the workloads (timer "
            f"`{r['timer']}`" + (f", pacer timer slack {slack} ns" if slack else "") +
            f", {r['duration_s']:.0f} s). Every latency above includes this floor; the "
            "`direct` results also report their own `send_lag_us`. The medians are the "
            "tool's own; p99 and beyond mostly follow what else this box runs at the time.",
            "", "| scheduling at | p50 | p99 | p99.9 | max | early | "
            "loadgen CPU µs/msg (% of a core) |", "|---|---|---|---|---|---|---|"]
    for s in r.get("schedule", []):
        e = s["error_us"]
        out.append(f"| {s['rate']:,.0f}/s | {_us(e['p50'])} | {_us(e['p99'])} | "
                   f"{_us(e['p999'])} | {_us(e['max'])} | {s['early']} | "
                   f"{s['cpu_us_per_msg']} ({s['cpu_pct']} %) |")
    out += ["", "| loopback round trip (`direct`, in-process reflector) | p50 | p99 | p99.9 | "
            "max | send lag p99 | loadgen CPU µs/msg |", "|---|---|---|---|---|---|---|"]
    for t in r.get("round_trip", []):
        lat = t["latency_us"]
        out.append(f"| via {t['via']}, {t['rate']:,.0f} msg/s, {t['pairs']} pairs | "
                   f"{_us(lat['p50'])} | {_us(lat['p99'])} | {_us(lat['p999'])} | "
                   f"{_us(lat['max'])} | {_us(q(t, 'send_lag_us', 'p99'))} | "
                   f"{t['cpu_us_per_msg']} |")
    bad = [c["name"] for c in r.get("checks", []) if not c.get("ok")]
    if bad:
        out += ["", f"- **Checks failed:** {', '.join(bad)}."]
    out += ["", f"- Command: `{fl['cmd']}`", ""]
    return out
