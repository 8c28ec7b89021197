"""HOOK: the load generator's measurement floor, `switchboard-loadgen selftest` (being added
on the loadgen-timing branch together with its own loadtest/bench/floor.py: run(ctx) and
section(result)). When floor.py is there, its run() and section() are used as they are.
Otherwise, when `switchboard-loadgen selftest --help` exits 0, the selftest runs once before
the workloads (`selftest --quiet --json F`) and the report keeps its raw result; without the
subcommand the report says so. Delete this module once floor.py is merged.
"""

import json
import os
import subprocess

try:
    import floor  # noqa: F401  (the loadgen-timing branch's module, when merged)
except ImportError:
    floor = None


def has_selftest(loadgen):
    try:
        return subprocess.run([loadgen, "selftest", "--help"], capture_output=True,
                              timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def run(ctx):
    if floor is not None:
        return floor.run(ctx)
    if not has_selftest(ctx.loadgen):
        return {"absent": f"{os.path.basename(ctx.loadgen)} has no `selftest` subcommand yet"}
    json_path, log_path = ctx.paths("floor-selftest")
    cmd = [ctx.loadgen, "selftest", "--quiet", "--json", json_path]
    ctx.log("measurement floor: " + " ".join(cmd[1:]))
    with open(log_path, "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=300).returncode
    if not os.path.exists(json_path):
        raise RuntimeError(f"selftest exited {rc} without a result (see {log_path})")
    with open(json_path) as f:
        return {"rc": rc, "cmd": " ".join(cmd), "result": json.load(f)}


def section(fl):
    if floor is not None and fl and not fl.get("absent"):
        return floor.section(fl)
    out = ["## Measurement floor (the load generator itself)", ""]
    if not fl:
        return out + ["Not run (`--only` without `floor`).", ""]
    if not fl.get("ok", True):
        return out + [f"**Failed:** {fl.get('error')}", ""]
    if fl.get("absent"):
        return out + [f"HOOK (loadtest/bench/floor_hook.py): {fl['absent']}. Once "
                      "`switchboard-loadgen selftest` exists, every run measures the load "
                      "generator's own scheduling error, loopback round trip and CPU per "
                      "message here, before the workloads.", ""]
    r = fl.get("result") or {}
    flat = {k: v for k, v in r.items() if isinstance(v, (int, float, str))}
    return out + [f"`{fl['cmd']}` (exit {fl['rc']}); raw result (the detailed section comes "
                  f"with loadtest/bench/floor.py): `{json.dumps(flat)[:600]}`", ""]
