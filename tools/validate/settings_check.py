"""Does the real gateway accept the settings a deployment gives it?

Used by check_deploy.py. Runs `switchboard serve` (target/release or target/debug, whichever
exists) with exactly the SWITCHBOARD_* environment of a compose service or of a rendered
overlay (ConfigMap + Secret), listeners on 127.0.0.1:0 and every Redis host rewritten to
127.0.0.1:1 (nothing listens there: no traffic leaves the machine and no Redis is touched).
Invalid configuration makes the binary exit 64 before binding anything (docs/protocol.md §1); a
valid one gets as far as the backplane (exit 1: connection refused) or, without a Redis URL,
starts and is killed.
"""

import base64
import os
import re
import subprocess


def find_binary(repo):
    """The newer of target/release/switchboard and target/debug/switchboard, if any."""
    found = [os.path.join(repo, p) for p in ("target/release/switchboard", "target/debug/switchboard")]
    found = [p for p in found if os.access(p, os.X_OK)]
    return max(found, key=os.path.getmtime) if found else None


def loopback_redis(url):
    """The same URL with every host (and Sentinel node) replaced by 127.0.0.1:1."""
    url = re.sub(r"^([a-z+-]+://)([^@/?]*@)?[^/?]*", lambda m: m.group(1) + (m.group(2) or "") + "127.0.0.1:1", url)
    return re.sub(r"(node=)[^&]*", r"\g<1>127.0.0.1:1", url)


def run_serve(binary, settings, timeout=10):
    """(accepted, detail): accepted is False only for exit status 64 (invalid configuration)."""
    env = {"PATH": "/usr/bin:/bin"}
    env.update({k: str(v) for k, v in settings.items()})
    env["SWITCHBOARD_LISTEN"] = env["SWITCHBOARD_ADMIN_LISTEN"] = "127.0.0.1:0"
    env["SWITCHBOARD_LOG_FORMAT"] = "text"
    if "SWITCHBOARD_REDIS_URL" in env:
        env["SWITCHBOARD_REDIS_URL"] = loopback_redis(env["SWITCHBOARD_REDIS_URL"])
        env["SWITCHBOARD_REDIS_TIMEOUT_MS"] = "500"
    p = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        return True, "started (killed after the timeout)"
    lines = [ln for ln in out.splitlines() if ln.strip()]
    return p.returncode != 64, f"exit {p.returncode}: " + "\n".join(lines[-6:])


def overlay_settings(objs, example_env=None):
    """The gateway container's environment in a rendered overlay: its ConfigMap and Secret
    data (decoded) and the node id; `example_env` stands in for a Secret the overlay does not
    render (prod's external switchboard-secrets)."""
    by = {(o["kind"], o["metadata"]["name"]): o for o in objs}
    dep = by[("Deployment", "switchboard")]
    c = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "switchboard"][0]
    env = {"SWITCHBOARD_NODE_ID": "switchboard-5d8f7c9b4-x2x7q"}
    for ef in c.get("envFrom", []):
        if "configMapRef" in ef:
            env.update(by[("ConfigMap", ef["configMapRef"]["name"])].get("data", {}))
        if "secretRef" in ef:
            sec = by.get(("Secret", ef["secretRef"]["name"]))
            if sec is not None:
                env.update({k: base64.b64decode(v).decode() for k, v in sec.get("data", {}).items()})
            elif example_env:
                env.update(example_env)
    return env


def read_env_file(path):
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                out[k] = v
    return out


def compose_settings(service):
    """A compose service's environment with ${VAR:-default} resolved to its default."""
    env = {}
    for k, v in (service.get("environment") or {}).items():
        v = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}", r"\1", str(v))
        env[k] = re.sub(r"\$\{[^}]*\}", "", v)
    return env
