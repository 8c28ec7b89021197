"""Schemathesis against the server API: generated valid and invalid requests for every
operation of docs/openapi.json, on live nodes (standard library + the schemathesis CLI).

    python3 -m tools.checks.api_fuzz [--binary target/debug/switchboard]
        [--schemathesis .venv/bin/schemathesis] [--max-examples 25] [--seed N]
        [--backplanes memory,redis]
    python3 -m tools.checks.api_fuzz --url http://host:9090 --api-key KEY [--max-examples N]

Local (default): for each backplane, one node on free ports — on the embedded backplane,
then on a redis-server of its own (tools/cluster.py) — with a fresh random API key. The
document the node serves at GET /v1/openapi.json must be docs/openapi.json byte for byte;
then `schemathesis run docs/openapi.json` with every check (no 5xx, status codes, content
types and bodies as documented, invalid data rejected with 4xx and the JSON error body,
valid data accepted, the API key enforced, 405 with `Allow` for other methods), and the
node must still be alive afterwards with no panic in its log.

Deployment (--url, or API_FUZZ_URL / API_FUZZ_API_KEY): the same run against a running node,
with the document it serves. It PUBLISHES to and DISCONNECTS random users and rooms: point it
at a staging deployment, never production. API_FUZZ_NAMESPACES (default `user,room`) names
the namespaces it may use (tools/checks/api_fuzz_hooks.py).

Prints one line per run with the totals (operations, test cases, failures) and a total line;
exit status 1 when any run found a failure or an error. The seed is printed for replay
(`--seed`); without one every run explores new cases.
"""

import argparse
import glob
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the tree
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
from ..cluster import Cluster  # noqa: E402

DOC = os.path.join(ROOT, "docs", "openapi.json")


def schemathesis(args, location, url, key, report_dir):
    """One schemathesis run; returns (exit code, the JSON run report)."""
    env = dict(os.environ)
    env["SCHEMATHESIS_HOOKS"] = "tools.checks.api_fuzz_hooks"
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    cmd = [args.schemathesis, "--config-file", os.path.join(HERE, "schemathesis.toml"),
           "run", location, "--url", url,
           "-H", f"Authorization: Bearer {key}",
           "--checks", "all", "--max-examples", str(args.max_examples), "--seed", str(args.seed),
           # One worker: hypothesis' lambda descriptions hit a CPython 3.11 ast.parse race
           # with several threads ("AST constructor recursion depth mismatch").
           "--workers", "1", "--request-timeout", "10",
           # Not the coverage phase: its boundary strings for a pattern with length bounds
           # ignore the pattern (":00" or "" as a "valid" channel), which the node rightly
           # refuses. Examples and fuzzing generate valid and invalid data from the schema.
           "--phases", "examples,fuzzing",
           # The channel pattern with its length bounds filters generated strings: not a
           # problem of the API.
           "--suppress-health-check", "filter_too_much",
           "--report", "json", "--report-dir", report_dir]
    out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, check=False)
    reports = sorted(glob.glob(os.path.join(report_dir, "*.json")))
    report = json.load(open(reports[-1])) if reports else None
    if out.returncode != 0 or report is None:
        # Reproductions can carry megabyte bodies: a screenful of each line is enough.
        for line in out.stdout.splitlines():
            print(line if len(line) <= 2000 else line[:2000] + f" …({len(line)} characters)")
    return out.returncode, report


def summarize(name, code, report, started):
    if report is None:
        print(f"FAIL {name}: schemathesis exited {code} without a report")
        return {"operations": 0, "cases": 0, "failures": 0, "errors": 1}
    t = {"operations": report["operations"]["tested"],
         "cases": report["test_cases"]["generated"],
         "failures": report["test_cases"]["unique_failures"],
         "errors": len(report["errors"])}
    ok = code == 0 and t["failures"] == 0 and t["errors"] == 0
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {t['operations']} operations, {t['cases']} cases, "
          f"{t['failures']} failures, {t['errors']} errors in {time.monotonic() - started:.1f}s")
    return t


def fetch(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read()


def local(args, backplane, work):
    started = time.monotonic()
    key = secrets.token_hex(16)
    redis = "single" if backplane == "redis" else "none"
    with Cluster(binary=args.binary, nodes=1, redis=redis,
                 env={"SWITCHBOARD_API_KEY": key}) as c:
        node = c.nodes[0]
        status, served = fetch(f"{node.api_url}/v1/openapi.json")
        if status != 200 or served != open(DOC, "rb").read():
            print(f"FAIL {backplane}: GET /v1/openapi.json is not docs/openapi.json (rebuild the binary)")
            return {"operations": 0, "cases": 0, "failures": 0, "errors": 1}
        code, report = schemathesis(args, DOC, node.api_url, key,
                                    os.path.join(work, backplane))
        totals = summarize(f"{backplane} backplane", code, report, started)
        alive = node.proc.poll() is None
        log = open(c.log_path(0), encoding="utf-8", errors="replace").read()
        if not alive or "panicked" in log:
            print(f"FAIL {backplane}: the node {'panicked' if alive else 'died'}; log:\n{log[-4000:]}")
            totals["errors"] += 1
        return totals


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--binary", default=os.path.join(ROOT, "target/debug/switchboard"))
    p.add_argument("--schemathesis", default=os.path.join(ROOT, ".venv/bin/schemathesis"))
    p.add_argument("--max-examples", type=int, default=25,
                   help="test cases per operation and phase (schemathesis --max-examples)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--backplanes", default="memory,redis")
    p.add_argument("--url", default=os.environ.get("API_FUZZ_URL") or None,
                   help="a running node's internal port, instead of local nodes")
    p.add_argument("--api-key", default=os.environ.get("API_FUZZ_API_KEY") or None)
    args = p.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 31)
    print(f"schemathesis --max-examples {args.max_examples} --seed {args.seed}")
    runs = []
    with tempfile.TemporaryDirectory(prefix="switchboard-api-fuzz-") as work:
        if args.url:
            if not args.api_key:
                p.error("--url needs --api-key (or API_FUZZ_API_KEY)")
            url = args.url.rstrip("/")
            started = time.monotonic()
            code, report = schemathesis(args, f"{url}/v1/openapi.json", url, args.api_key,
                                        os.path.join(work, "deployment"))
            runs.append(summarize(url, code, report, started))
        else:
            for backplane in args.backplanes.split(","):
                runs.append(local(args, backplane, work))
    total = {k: sum(r[k] for r in runs) for k in ("operations", "cases", "failures", "errors")}
    bad = total["failures"] + total["errors"]
    print(f"{'ok  ' if not bad else 'FAIL'} total: {len(runs)} runs, {total['operations']} operations, "
          f"{total['cases']} cases, {total['failures']} failures, {total['errors']} errors")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
