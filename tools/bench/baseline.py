"""The baseline gateway behind the report's "before" column (bench.py --baseline SPEC):

    SPEC = a path to a `switchboard` binary   (e.g. /work/baseline/switchboard-5fa1693)
         | a git revision of this repository   (built once by build-baseline.sh, no worktree)
         | none                                (no before column)

The current load generator drives both gateways (the protocol did not change).
"""

import hashlib
import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(HERE, "build-baseline.sh")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve(spec, log=print):
    """{"spec", "binary", "label", "sha256", "version"} or None for `none` / empty."""
    if not spec or spec == "none":
        return None
    if os.path.sep in spec or os.path.exists(spec):
        binary = os.path.abspath(spec)
        if not os.access(binary, os.X_OK):
            raise FileNotFoundError(f"baseline binary {binary} is missing or not executable")
        label = os.path.basename(binary)
    else:
        log(f"baseline: building revision {spec} (build-baseline.sh; cached after the first)")
        r = subprocess.run(["bash", BUILD, spec], stdout=subprocess.PIPE, text=True)
        if r.returncode != 0 or not r.stdout.strip():
            raise RuntimeError(f"build-baseline.sh {spec} failed ({r.returncode})")
        binary = r.stdout.strip().splitlines()[-1]
        label = f"revision {spec}"
    try:
        version = subprocess.run([binary, "--version"], capture_output=True, text=True,
                                 timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        version = ""
    return {"spec": spec, "binary": binary, "label": label, "sha256": sha256(binary),
            "version": version}
