#!/usr/bin/env python3
"""A local Switchboard cluster for tests, load tests and benchmarks (standard library only).

Starts one redis-server on a free port and N gateway nodes on port 0, reads each node's
addresses from its `listening public=… internal=…` line and waits for /readyz 200.

As a library (the load tests, the benchmark runner and the rolling-restart check use it):

    import sys; sys.path.insert(0, "deploy"); from cluster import Cluster
    with Cluster(binary="target/debug/switchboard", nodes=3, args=["--drain-seconds", "4"]) as c:
        c.nodes[0].public, c.nodes[0].internal, c.nodes[0].pid, c.nodes[0].node_id
        c.terminate(0)   # SIGTERM, wait for the exit, return the exit code
        c.start_node(0)  # same node id, same ports; waits until ready
        c.kill(0)        # SIGKILL

As a command (one JSON line with the addresses, then runs until SIGINT/SIGTERM):

    python3 deploy/cluster.py --nodes 3 --binary target/release/switchboard [--state FILE] [-- serve args…]

The development JWT secret and API key are set unless the environment already has
SWITCHBOARD_JWT_SECRET / SWITCHBOARD_API_KEY. Node output goes to files in a temp dir
(`log_path(i)`), kept when the cluster fails to start so the reason can be read.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

DEV_SECRET = "dev-secret-change-me-0123456789abcdef"
DEV_API_KEY = "dev-api-key"
LISTENING = re.compile(r"listening public=(\S+) internal=(\S+)")


def free_port(host="127.0.0.1"):
    """A TCP port that was free a moment ago (for servers that cannot take port 0)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def raise_nofile():
    """Children inherit the soft limit: lift it to the hard limit for 10k+ sockets a node."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


def start_redis(directory, host="127.0.0.1", args=()):
    """A throwaway redis-server (no persistence) on a free port: returns (process, port).
    Retries on another port when the chosen one was taken in the meantime."""
    for _ in range(20):
        port = free_port(host)
        with open(os.path.join(directory, "redis.log"), "ab") as log:
            proc = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", host,
                 "--save", "", "--appendonly", "no", "--dir", directory, *args],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection((host, port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return proc, port
            except OSError:
                time.sleep(0.05)
        proc.kill()
        proc.wait()
    raise RuntimeError("redis-server did not start")


class Node:
    def __init__(self, index, node_id):
        self.index = index
        self.node_id = node_id
        self.public = None  # "127.0.0.1:PORT" of /ws
        self.internal = None  # "127.0.0.1:PORT" of /v1, /metrics, /readyz
        self.proc = None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def ws_url(self):
        return f"ws://{self.public}/ws"

    @property
    def api_url(self):
        return f"http://{self.internal}"

    def as_dict(self):
        return {"node_id": self.node_id, "public": self.public, "internal": self.internal, "pid": self.pid}


class Cluster:
    def __init__(self, binary="target/debug/switchboard", nodes=3, args=(), env=None,
                 redis=True, redis_args=(), host="127.0.0.1", start_timeout=60.0):
        self.binary = os.path.abspath(binary)
        self.args = list(args)
        self.env = dict(env or {})
        self.redis = redis
        self.redis_args = list(redis_args)
        self.host = host
        self.start_timeout = start_timeout
        self.nodes = [Node(i, f"node-{i + 1}") for i in range(nodes)]
        self.dir = tempfile.mkdtemp(prefix="switchboard-cluster-")
        self.redis_port = None
        self.redis_proc = None
        self._ok = False

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        raise_nofile()
        if not os.path.exists(self.binary):
            raise FileNotFoundError(f"gateway binary not found: {self.binary}")
        try:
            if self.redis:
                self._start_redis()
            for i in range(len(self.nodes)):
                self.start_node(i, wait=False)
            for i in range(len(self.nodes)):
                self.wait_ready(i)
            self._ok = True
        except BaseException:
            self.stop(keep_logs=True)
            raise
        return self

    def stop(self, keep_logs=False):
        for n in self.nodes:
            if n.proc and n.proc.poll() is None:
                n.proc.kill()
                n.proc.wait()
        if self.redis_proc and self.redis_proc.poll() is None:
            self.redis_proc.kill()
            self.redis_proc.wait()
        if keep_logs:
            print(f"cluster: logs kept in {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def redis_pid(self):
        return self.redis_proc.pid if self.redis_proc else None

    @property
    def redis_url(self):
        return f"redis://{self.host}:{self.redis_port}/0" if self.redis_port else None

    def log_path(self, i):
        return os.path.join(self.dir, f"{self.nodes[i].node_id}.log")

    def _start_redis(self):
        self.redis_proc, self.redis_port = start_redis(self.dir, self.host, self.redis_args)

    # -- nodes -------------------------------------------------------------------------

    def start_node(self, i, wait=True):
        """Starts node i; a restart keeps its node id and its ports."""
        n = self.nodes[i]
        public = n.public or f"{self.host}:0"
        internal = n.internal or f"{self.host}:0"
        env = dict(os.environ)
        env.setdefault("SWITCHBOARD_JWT_SECRET", DEV_SECRET)
        env.setdefault("SWITCHBOARD_API_KEY", DEV_API_KEY)
        env.update(self.env)
        cmd = [self.binary, "serve", "--listen", public, "--admin-listen", internal,
               "--node-id", n.node_id]
        if self.redis_url:
            cmd += ["--redis-url", self.redis_url]
        cmd += self.args
        log_path = self.log_path(i)
        offset = os.path.getsize(log_path) if os.path.exists(log_path) else 0
        with open(log_path, "ab") as log:
            n.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.start_timeout
        while True:
            with open(log_path, "rb") as f:
                f.seek(offset)
                m = LISTENING.search(f.read().decode("utf-8", "replace"))
            if m:
                n.public, n.internal = m.group(1), m.group(2)
                break
            if n.proc.poll() is not None:
                raise RuntimeError(f"{n.node_id} exited with {n.proc.returncode}; see {log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{n.node_id} printed no listening line; see {log_path}")
            time.sleep(0.02)
        if wait:
            self.wait_ready(i)
        return n

    def ready(self, i):
        try:
            with urllib.request.urlopen(f"http://{self.nodes[i].internal}/readyz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_ready(self, i, timeout=None):
        deadline = time.monotonic() + (timeout or self.start_timeout)
        n = self.nodes[i]
        while not self.ready(i):
            if n.proc.poll() is not None:
                raise RuntimeError(f"{n.node_id} exited with {n.proc.returncode}; see {self.log_path(i)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{n.node_id} not ready; see {self.log_path(i)}")
            time.sleep(0.05)

    def terminate(self, i, timeout=120):
        """SIGTERM (a drain) and wait for the exit; returns the exit code."""
        p = self.nodes[i].proc
        p.send_signal(signal.SIGTERM)
        return p.wait(timeout=timeout)

    def kill(self, i):
        p = self.nodes[i].proc
        p.kill()
        return p.wait()

    def as_dict(self):
        return {"redis_port": self.redis_port, "redis_pid": self.redis_pid, "dir": self.dir,
                "nodes": [n.as_dict() for n in self.nodes]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--binary", default="target/release/switchboard")
    ap.add_argument("--no-redis", action="store_true", help="one node on the embedded backplane")
    ap.add_argument("--state", help="also write the JSON line to this file")
    ap.add_argument("serve_args", nargs="*", help="extra `switchboard serve` arguments (after --)")
    a = ap.parse_args()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    with Cluster(binary=a.binary, nodes=a.nodes, args=a.serve_args, redis=not a.no_redis) as c:
        line = json.dumps(c.as_dict())
        print(line, flush=True)
        if a.state:
            with open(a.state, "w") as f:
                f.write(line + "\n")
        try:
            while not stop:
                for n in c.nodes:
                    if n.proc.poll() is not None:
                        print(f"cluster: {n.node_id} exited with {n.proc.returncode}", file=sys.stderr)
                        return 1
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
