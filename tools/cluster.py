"""A local Switchboard cluster for tests, load tests and benchmarks (standard library only).

Starts one redis-server on a free port and N gateway nodes on port 0, reads each node's
addresses from its `listening public=… internal=…` line and waits for /readyz 200.

As a library (the load tests, the benchmark runner and the rolling-restart check use it):

    from tools.cluster import Cluster
    with Cluster(binary="target/debug/switchboard", nodes=3, args=["--drain-seconds", "4"]) as c:
        c.nodes[0].public, c.nodes[0].internal, c.nodes[0].pid, c.nodes[0].node_id
        c.terminate(0)   # SIGTERM, wait for the exit, return the exit code
        c.start_node(0)  # same node id, same ports; waits until ready
        c.kill(0)        # SIGKILL
        c.kill_redis(); c.restart_redis()  # SIGKILL the single Redis, start it on its port again

With `redis="cluster"` the backplane is a Redis Cluster from deploy/redis-cluster.sh (3
primaries with 1 replica each by default, free ports, node timeout 2 s): `c.redis_url` is
its `redis-cluster://…` URL, `c.redis_ports` / `c.redis_pids` list every redis-server and
`c.redis_primary_ports`, `c.redis_primary_pids`, `c.redis_replica_ports`,
`c.redis_replica_pids` split them by role as created (a failover changes roles later).
`c.redis_port` / `c.redis_pid` are the single Redis only: in cluster mode they raise.
`nodes=0` starts Redis alone (no gateway binary needed).

As a command (one JSON line with the addresses, then runs until SIGINT/SIGTERM):

    python3 -m tools.cluster --nodes 3 --binary target/release/switchboard [--state FILE] \
        [--redis single|cluster|none] [-- serve args…]

The development JWT secret and API key are set unless the environment already has
SWITCHBOARD_JWT_SECRET / SWITCHBOARD_API_KEY. Node output goes to files in a temp dir
(`log_path(i)`), kept when the cluster fails to start so the reason can be read.
"""

import argparse
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile

from .proc import (Service, free_ports, http_ok, kill as kill_process, raise_nofile, serve,
                   start_redis, stop_flag, wait_http_ok, wait_listening)

DEV_SECRET = "dev-secret-change-me-0123456789abcdef"
DEV_API_KEY = "dev-api-key"
LISTENING = re.compile(r"listening public=(\S+) internal=(\S+)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REDIS_CLUSTER_SH = os.path.join(ROOT, "deploy", "redis-cluster.sh")
PORT_TAKEN = 3  # redis-cluster.sh's exit status when a port was taken meanwhile


class RedisCluster:
    """A Redis Cluster started by deploy/redis-cluster.sh --watch-stdin on free ports.

    The script stays alive as the nodes' parent and stops them all when its stdin closes,
    so the nodes never outlive this process (not even a SIGKILLed one)."""

    def __init__(self, directory, host="127.0.0.1", primaries=3, replicas=1,
                 node_timeout_ms=2000, args=(), start_timeout=90.0):
        self.dir = os.path.join(directory, "redis-cluster")
        self.log_path = os.path.join(directory, "redis-cluster.log")
        self.host = host
        self.primaries = primaries
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.args = list(args)
        self.start_timeout = start_timeout
        self.proc = None
        self.url = None
        self.ports = []
        self.pids = []
        self.primary_ports = []
        self.replica_ports = []

    @property
    def primary_pids(self):
        return [self.pids[self.ports.index(p)] for p in self.primary_ports]

    @property
    def replica_pids(self):
        return [self.pids[self.ports.index(p)] for p in self.replica_ports]

    def start(self):
        if self.host != "127.0.0.1":
            raise ValueError("redis-cluster.sh binds 127.0.0.1 only")
        n = self.primaries * (1 + self.replicas)
        for _ in range(5):
            ports = free_ports(2 * n, self.host)
            status, why = self._launch(ports[:n], ports[n:])
            if status is None:
                return self
            if status != PORT_TAKEN:
                break
            # Another try on other ports, in a clean directory.
            subprocess.run(["bash", REDIS_CLUSTER_SH, "stop", self.dir],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        raise RuntimeError(f"the Redis Cluster did not start: {why}; see {self.log_path}")

    def _launch(self, ports, bus_ports):
        cmd = ["bash", REDIS_CLUSTER_SH, "start", self.dir,
               "--primaries", str(self.primaries), "--replicas", str(self.replicas),
               "--ports", ",".join(map(str, ports)), "--bus-ports", ",".join(map(str, bus_ports)),
               "--node-timeout", str(self.node_timeout_ms),
               "--timeout", str(int(self.start_timeout)), "--watch-stdin", "--", *self.args]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=log)
        # The script gives up after its --timeout; a little more here for the cleanup.
        ready, _, _ = select.select([self.proc.stdout], [], [], self.start_timeout + 30)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("ready "):
            self.stop()
            return self.proc.returncode, "no ready line" if ready else "no ready line in time"
        f = dict(kv.split("=", 1) for kv in line.split()[1:])
        self.url = f["url"]
        self.ports = [int(p) for p in f["ports"].split(",")]
        self.pids = [int(p) for p in f["pids"].split(",")]
        self.primary_ports = [int(p) for p in f["primaries"].split(",")]
        self.replica_ports = [int(p) for p in f["replicas"].split(",") if p]
        return None, None

    def restart(self, port):
        """Starts the killed node on `port` again (same files and config: it rejoins)."""
        self.proc.stdin.write(f"restart {port}\n".encode())
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline().decode()
            if line.startswith(f"restarted port={port} "):
                pid = int(line.split("pid=")[1])
                self.pids[self.ports.index(port)] = pid
                return pid
            if not line or line.startswith(f"failed port={port} "):
                raise RuntimeError(f"node {port} did not restart: {line.strip() or 'launcher gone'}")

    def stop(self):
        """Closes the launcher's stdin (it stops every node) and waits; kills it otherwise."""
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            subprocess.run(["bash", REDIS_CLUSTER_SH, "stop", self.dir],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        self.proc.stdout.close()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def as_dict(self):
        return {"url": self.url, "ports": self.ports, "pids": self.pids,
                "primaries": [{"port": p, "pid": pid} for p, pid in
                              zip(self.primary_ports, self.primary_pids)],
                "replicas": [{"port": p, "pid": pid} for p, pid in
                             zip(self.replica_ports, self.replica_pids)]}


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


class Cluster(Service):
    REDIS_MODES = {True: "single", "single": "single", False: "none", None: "none",
                   "none": "none", "cluster": "cluster"}

    def __init__(self, binary="target/debug/switchboard", nodes=3, args=(), env=None,
                 redis=True, redis_args=(), host="127.0.0.1", start_timeout=60.0,
                 redis_primaries=3, redis_replicas=1, redis_node_timeout_ms=2000):
        """redis: True / "single" (one redis-server), "cluster" (a Redis Cluster of
        redis_primaries × (1 + redis_replicas) nodes) or False / None / "none" (the
        embedded backplane). redis_args go to every redis-server."""
        if redis not in self.REDIS_MODES:
            raise ValueError(f"redis must be one of single, cluster, none (or a bool), not {redis!r}")
        self.binary = os.path.abspath(binary)
        self.args = list(args)
        self.env = dict(env or {})
        self.redis = redis
        self.redis_mode = self.REDIS_MODES[redis]
        self.redis_args = list(redis_args)
        self.host = host
        self.start_timeout = start_timeout
        self.nodes = [Node(i, f"node-{i + 1}") for i in range(nodes)]
        self.dir = tempfile.mkdtemp(prefix="switchboard-cluster-")
        self._redis_port = None
        self.redis_proc = None
        self.redis_cluster = None
        if self.redis_mode == "cluster":
            self.redis_cluster = RedisCluster(
                self.dir, host, primaries=redis_primaries, replicas=redis_replicas,
                node_timeout_ms=redis_node_timeout_ms, args=self.redis_args)
        self._ok = False

    # -- lifecycle ---------------------------------------------------------------------

    def start(self):
        raise_nofile()
        if self.nodes and not os.path.exists(self.binary):
            raise FileNotFoundError(f"gateway binary not found: {self.binary}")
        try:
            if self.redis_mode != "none":
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
        for p in [n.proc for n in self.nodes] + [self.redis_proc]:
            if p:
                kill_process(p)
        if self.redis_cluster:
            self.redis_cluster.stop()
        if keep_logs:
            print(f"cluster: logs kept in {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _single_redis(self, what, value):
        if self.redis_mode == "cluster":
            raise RuntimeError(f"{what} is the single Redis: this cluster runs a Redis Cluster "
                               f"(use {what}s, or redis_primary_{what[6:]}s / redis_replica_{what[6:]}s)")
        return value

    @property
    def redis_port(self):
        """The single redis-server's port (None without Redis; raises with a Redis Cluster)."""
        return self._single_redis("redis_port", self._redis_port)

    @property
    def redis_pid(self):
        """The single redis-server's pid (None without Redis; raises with a Redis Cluster)."""
        return self._single_redis("redis_pid", self.redis_proc.pid if self.redis_proc else None)

    @property
    def redis_url(self):
        if self.redis_cluster:
            return self.redis_cluster.url
        return f"redis://{self.host}:{self._redis_port}/0" if self._redis_port else None

    @property
    def redis_ports(self):
        """Every redis-server's port: [port] for one Redis, every node of a Redis Cluster."""
        if self.redis_cluster:
            return list(self.redis_cluster.ports)
        return [self._redis_port] if self._redis_port else []

    @property
    def redis_pids(self):
        """Every redis-server's pid (for CPU and memory from /proc/<pid>/stat)."""
        if self.redis_cluster:
            return list(self.redis_cluster.pids)
        return [self.redis_proc.pid] if self.redis_proc else []

    @property
    def redis_primary_ports(self):
        return list(self.redis_cluster.primary_ports) if self.redis_cluster else self.redis_ports

    @property
    def redis_primary_pids(self):
        return self.redis_cluster.primary_pids if self.redis_cluster else self.redis_pids

    @property
    def redis_replica_ports(self):
        return list(self.redis_cluster.replica_ports) if self.redis_cluster else []

    @property
    def redis_replica_pids(self):
        return self.redis_cluster.replica_pids if self.redis_cluster else []

    def kill_redis(self):
        """SIGKILLs the single redis-server; its files stay (with AOF it restarts with its data)."""
        return kill_process(self._single_redis("redis_proc", self.redis_proc))

    def restart_redis(self):
        """Starts the single redis-server again: same port, directory and arguments."""
        self._single_redis("redis_proc", None)
        self.redis_proc, _ = start_redis(self.dir, self.host, self.redis_args, port=self._redis_port)
        return self.redis_proc.pid

    def log_path(self, i):
        return os.path.join(self.dir, f"{self.nodes[i].node_id}.log")

    def _start_redis(self):
        if self.redis_cluster:
            self.redis_cluster.start()
        else:
            self.redis_proc, self._redis_port = start_redis(self.dir, self.host, self.redis_args)

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
        m = wait_listening(n.proc, log_path, LISTENING, n.node_id, self.start_timeout, offset)
        n.public, n.internal = m.group(1), m.group(2)
        if wait:
            self.wait_ready(i)
        return n

    def ready(self, i):
        return http_ok(f"http://{self.nodes[i].internal}/readyz", timeout=2)

    def wait_ready(self, i, timeout=None):
        n = self.nodes[i]
        wait_http_ok(n.proc, f"http://{n.internal}/readyz", n.node_id, self.log_path(i),
                     timeout or self.start_timeout, request_timeout=2)

    def terminate(self, i, timeout=120):
        """SIGTERM (a drain) and wait for the exit; returns the exit code."""
        p = self.nodes[i].proc
        p.send_signal(signal.SIGTERM)
        return p.wait(timeout=timeout)

    def kill(self, i):
        return kill_process(self.nodes[i].proc)

    def as_dict(self):
        d = {"redis": self.redis_mode, "redis_url": self.redis_url, "redis_ports": self.redis_ports,
             "redis_pids": self.redis_pids, "dir": self.dir, "nodes": [n.as_dict() for n in self.nodes]}
        if self.redis_cluster:
            d.update(redis_port=None, redis_pid=None, redis_cluster=self.redis_cluster.as_dict())
        else:
            d.update(redis_port=self.redis_port, redis_pid=self.redis_pid)
        return d


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--binary", default="target/release/switchboard")
    ap.add_argument("--redis", choices=["single", "cluster", "none"], default="single",
                    help="one redis-server (default), a Redis Cluster (deploy/redis-cluster.sh) "
                         "or none (one node on the embedded backplane)")
    ap.add_argument("--no-redis", action="store_true", help="the same as --redis none")
    ap.add_argument("--redis-primaries", type=int, default=3, help="Redis Cluster primaries (3)")
    ap.add_argument("--redis-replicas", type=int, default=1, help="replicas of each primary (1)")
    ap.add_argument("--redis-node-timeout-ms", type=int, default=2000,
                    help="Redis Cluster cluster-node-timeout (2000)")
    ap.add_argument("--state", help="also write the JSON line to this file")
    ap.add_argument("serve_args", nargs="*", help="extra `switchboard serve` arguments (after --)")
    a = ap.parse_args()
    stop = stop_flag()
    with Cluster(binary=a.binary, nodes=a.nodes, args=a.serve_args,
                 redis="none" if a.no_redis else a.redis, redis_primaries=a.redis_primaries,
                 redis_replicas=a.redis_replicas,
                 redis_node_timeout_ms=a.redis_node_timeout_ms) as c:
        def failure():
            for n in c.nodes:
                if n.proc.poll() is not None:
                    return f"{n.node_id} exited with {n.proc.returncode}"
            if c.redis_cluster and not c.redis_cluster.running():
                return "the Redis Cluster launcher exited"
            return None

        why = serve(c.as_dict(), a.state, stop, failure)
        if why:
            print(f"cluster: {why}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
