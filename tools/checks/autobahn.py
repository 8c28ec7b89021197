"""WebSocket conformance: the Autobahn TestSuite cases against the gateway's own WebSocket
stack (`make check-autobahn`; standard library only, plus the `kosoku` command).

    python3 -m tools.checks.autobahn --binary target/debug/switchboard \
        --kosoku .venv/bin/kosoku [--out target/autobahn]

Each run starts one node (embedded backplane, port 0, its `listening …` line read by
tools/cluster.py) with the development-only echo: `--dev-echo` mounts GET /echo, a
connection of the production stack (handshake checks, frame reader, message size limit,
UTF-8 checks, outbound queue, closing handshake) with an echo in place of the session. kosoku
(PyPI, pinned in requirements-dev.txt) runs the Autobahn TestSuite's fuzzingclient cases
against ws://…/echo, one case at a time:

  default  every case but 9.*, 12.* and 13.*, against a node with the default limits
           (--max-message-bytes 65536): what production runs.
  large    9.* (messages and frames up to 16 MiB, bursts of 1,000 messages) against a node
           whose --max-message-bytes and --outbound-queue-bytes let 16 MiB through; under the
           default limit those messages are closed with 1009, as configured.

Not run: 12.* and 13.* test permessage-deflate, which the gateway does not offer (the cases
could only report UNIMPLEMENTED).

Reports (Autobahn's format: index.html, index.json, one file per case) go to <out>/default/ and
<out>/large/, the totals to <out>/summary.json. Prints the totals by verdict and every case
that is not plain OK. Exit status 1 when any case is FAILED, or has any verdict but OK,
NON-STRICT or INFORMATIONAL, or a close verdict but OK or INFORMATIONAL, or when a run
returned no case of a category it should have run.
"""

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the tree
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ..cluster import Cluster  # noqa: E402

# The largest message of the 9.* cases (9.1.6, 9.2.6: 16 MiB in one frame).
LARGE_MESSAGE = 16 << 20
RUNS = [
    # name, extra serve args, kosoku selection, categories that must have results
    ("default", [], ["-x", "9.*", "-x", "12.*", "-x", "13.*"],
     {"1", "2", "3", "4", "5", "6", "7", "10"}),
    ("large", [f"--max-message-bytes={LARGE_MESSAGE}",
               f"--outbound-queue-bytes={4 * LARGE_MESSAGE}"], ["-i", "9.*"], {"9"}),
]
NOT_APPLICABLE = {
    "12.*": "permessage-deflate (compression) is not offered by the gateway",
    "13.*": "permessage-deflate (compression) is not offered by the gateway",
}
BEHAVIORS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "ERROR"]
ACCEPTED = {"OK", "NON-STRICT", "INFORMATIONAL"}
ACCEPTED_CLOSE = {"OK", "INFORMATIONAL"}


def case_key(case_id):
    return [int(p) for p in case_id.split(".")]


def run(name, binary, kosoku, serve_args, selection, out, parallelism):
    """One node, one kosoku run; returns {case id: (index entry, case report)}."""
    outdir = os.path.join(out, name)
    shutil.rmtree(outdir, ignore_errors=True)
    args = ["--dev-echo", "--log-level=warn"] + serve_args
    with Cluster(binary=binary, nodes=1, args=args, redis=False) as c:
        url = f"ws://{c.nodes[0].public}/echo"
        cmd = [kosoku, "-o", outdir, "-p", str(parallelism)] + selection + [url]
        print(f"== {name}: {' '.join(cmd[1:])}  (node {' '.join(args)})", flush=True)
        started = time.monotonic()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=900)
        took = time.monotonic() - started
        if c.nodes[0].proc.poll() is not None:
            raise SystemExit(f"{name}: the node exited during the run; see {c.log_path(0)}")
    index_path = os.path.join(outdir, "index.json")
    if not os.path.exists(index_path):
        print(proc.stdout)
        raise SystemExit(f"{name}: kosoku wrote no report (exit {proc.returncode})")
    with open(index_path) as f:
        index = json.load(f)
    cases = {}
    for entries in index.values():
        for case_id, entry in entries.items():
            with open(os.path.join(outdir, entry["reportfile"])) as f:
                cases[case_id] = (entry, json.load(f))
    print(f"   {len(cases)} cases in {took:.1f} s (kosoku exit {proc.returncode}); "
          f"report {os.path.join(outdir, 'index.html')}", flush=True)
    return cases, took


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default="target/debug/switchboard")
    ap.add_argument("--kosoku", default=".venv/bin/kosoku")
    ap.add_argument("--out", default="target/autobahn")
    ap.add_argument("--parallelism", type=int, default=1,
                    help="cases at once (1: the timing-based cases stay deterministic)")
    opts = ap.parse_args()
    os.makedirs(opts.out, exist_ok=True)

    problems = []
    results = {}
    timings = {}
    for name, serve_args, selection, categories in RUNS:
        cases, took = run(name, opts.binary, opts.kosoku, serve_args, selection, opts.out,
                          opts.parallelism)
        timings[name] = round(took, 1)
        missing = categories - {cid.split(".")[0] for cid in cases}
        if missing:
            problems.append(f"{name}: no result for categories {sorted(missing)}")
        for cid, (entry, report) in cases.items():
            results[cid] = (name, entry, report)

    totals = collections.Counter(entry["behavior"] for _, entry, _ in results.values())
    close_totals = collections.Counter(entry["behaviorClose"] for _, entry, _ in results.values())
    notable = []
    for cid in sorted(results, key=case_key):
        name, entry, report = results[cid]
        behavior, close = entry["behavior"], entry["behaviorClose"]
        if behavior != "OK" or close != "OK":
            notable.append({"case": cid, "run": name, "behavior": behavior,
                            "behaviorClose": close, "remoteCloseCode": entry["remoteCloseCode"],
                            "description": report["description"].split("<br>")[0].strip(),
                            "result": report["result"], "resultClose": report["resultClose"]})
        if behavior not in ACCEPTED or close not in ACCEPTED_CLOSE:
            problems.append(f"{cid}: behavior {behavior}, close {close}: {report['result']} "
                            f"{report['resultClose']}")

    summary = {
        "cases": len(results),
        "behavior": {b: totals.get(b, 0) for b in BEHAVIORS},
        "behaviorClose": dict(sorted(close_totals.items())),
        "seconds": timings,
        "not_run": NOT_APPLICABLE,
        "not_ok": notable,
        "problems": problems,
    }
    with open(os.path.join(opts.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")

    print()
    for n in notable:
        print(f"   {n['case']:<8} {n['behavior']:<13} close {n['behaviorClose']:<13} "
              f"code {n['remoteCloseCode']}  {n['description']}")
    for pattern, why in NOT_APPLICABLE.items():
        print(f"   {pattern:<8} not run: {why}")
    print(f"\nAutobahn: {len(results)} cases, "
          + ", ".join(f"{b} {totals.get(b, 0)}" for b in BEHAVIORS)
          + f"; report {opts.out}/ (summary.json, default/index.html, large/index.html)")
    for p in problems:
        print(f"FAILED {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
