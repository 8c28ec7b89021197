"""Systems under test for the benchmark runner, all with the same shape (context managers):

    name, label, protocol (loadgen --protocol), targets ["host:port"…], api ["http://…"…],
    server_pids (gateway / peer server processes), redis_pids, redis_ports (every
    redis-server), redis_roles ([{role: single|primary|replica, port, pid}]), auth_args

Ours: tools/cluster.py (one Redis or a Redis Cluster on free ports + N `switchboard serve`
nodes on port 0) with the benchmark settings; the same class runs the baseline binary.
Peers: tools/peers.py's Peer (the library form of `python3 -m tools.peers <peer> --nodes N
--redis-port P`) on a Redis the runner starts. Imported by the
workload modules.
"""

import os
import sys
import urllib.request

from .. import peers as peer_servers
from ..cluster import DEV_API_KEY, DEV_SECRET, Cluster
from . import procs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GATEWAY_ARGS = ["--rate-limit", "0", "--max-connections", "200000", "--namespaces", "feed",
                "--heartbeat-ms", "25000"]
# loadgen --protocol of each peer of loadtest/peers.
PEER_PROTOCOL = {"socketio": "socketio", "ws": "plain", "sockudo": "pusher"}
PEER_LABEL = {"socketio": "Socket.IO 4 + redis-adapter", "ws": "ws + ioredis",
              "sockudo": "Sockudo"}
RUN_PEER = os.path.join(ROOT, "tools", "peers.py")


class Ours:
    """Switchboard nodes from tools/cluster.py. redis: "single" (one redis-server) or
    "cluster" (a Redis Cluster of 3 primaries × `redis_replicas`). `name` / `label` tell the
    current build from the baseline binary in file names and the report."""

    def __init__(self, binary, nodes=3, extra_args=(), redis="single", redis_replicas=0,
                 name="switchboard", label="Switchboard"):
        self.binary = binary
        self.nodes = nodes
        self.extra_args = list(extra_args)
        self.redis_mode = redis
        self.redis_replicas = redis_replicas
        self.name = name
        self.label = label
        self.protocol = "switchboard"
        self.auth_args = ["--api-key", DEV_API_KEY, "--jwt-secret", DEV_SECRET]
        self.cluster = None

    def __enter__(self):
        self.cluster = Cluster(binary=self.binary, nodes=self.nodes,
                               args=GATEWAY_ARGS + self.extra_args,
                               env={"SWITCHBOARD_JWT_SECRET": DEV_SECRET,
                                    "SWITCHBOARD_API_KEY": DEV_API_KEY},
                               redis=self.redis_mode, redis_replicas=self.redis_replicas)
        self.cluster.start()
        c = self.cluster
        self.targets = [n.public for n in c.nodes]
        self.api = [n.api_url for n in c.nodes]
        self.server_pids = [n.pid for n in c.nodes]
        self.redis_pids = c.redis_pids
        self.redis_ports = c.redis_ports
        if c.redis_cluster:
            self.redis_roles = (
                [{"role": "primary", "port": p, "pid": pid}
                 for p, pid in zip(c.redis_primary_ports, c.redis_primary_pids)]
                + [{"role": "replica", "port": p, "pid": pid}
                   for p, pid in zip(c.redis_replica_ports, c.redis_replica_pids)])
        else:
            self.redis_roles = [{"role": "single", "port": p, "pid": pid}
                                for p, pid in zip(self.redis_ports, self.redis_pids)]
        return self

    def alive(self):
        return all(n.proc.poll() is None for n in self.cluster.nodes)

    def metric(self, name):
        """Sum of one Prometheus metric (every label set) over the nodes' /metrics."""
        total = 0.0
        for url in self.api:
            with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
                for line in r.read().decode().splitlines():
                    if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
                        total += float(line.rsplit(" ", 1)[1])
        return total

    def describe(self):
        return {"name": self.name, "binary": self.binary, "nodes": self.nodes,
                "args": GATEWAY_ARGS + self.extra_args, "targets": self.targets,
                "redis": self.redis_mode, "redis_url": self.cluster.redis_url,
                "redis_roles": self.redis_roles}

    def __exit__(self, *exc):
        if self.cluster:
            self.cluster.stop()
        return False


class Peer:
    """A peer cluster from tools/peers.py (its Peer context manager) on a Redis
    started here (so Redis CPU is measured the same way as for ours)."""

    def __init__(self, peer, workdir, nodes=3):
        self.peer = peer
        self.name = peer
        self.label = PEER_LABEL.get(peer, peer)
        self.protocol = PEER_PROTOCOL[peer]
        self.nodes = nodes
        self.workdir = workdir
        self.redis = None
        self.cluster = None
        self.info = {}

    def __enter__(self):
        self.redis = procs.Redis(self.workdir).__enter__()
        for attempt in (1, 2):
            try:
                self.cluster = peer_servers.Peer(self.peer, nodes=self.nodes,
                                                 redis_port=self.redis.port)
                self.cluster.start()
                break
            except (RuntimeError, TimeoutError) as e:
                # A node that lost a free-port race ("Address already in use") gets one retry.
                self.cluster = None
                if attempt == 2:
                    self.redis.__exit__()
                    raise
                print(f"bench: {self.peer} did not start ({e}); retrying once", file=sys.stderr)
            except BaseException:
                self.cluster = None
                self.redis.__exit__()
                raise
        self.info = self.cluster.info()
        self.targets = list(self.cluster.targets)
        self.api = list(self.cluster.api)
        self.server_pids = list(self.cluster.pids)
        self.redis_pids = [self.redis.pid]
        self.redis_ports = [self.redis.port]
        self.redis_roles = [{"role": "single", "port": self.redis.port, "pid": self.redis.pid}]
        self.auth_args = []
        pusher = self.info.get("pusher") or {}
        if self.protocol == "pusher":
            self.auth_args = ["--pusher-app-id", str(pusher["app_id"]),
                              "--pusher-key", str(pusher["key"]),
                              "--pusher-secret", str(pusher["secret"])]
        return self

    def alive(self):
        return self.cluster.dead() is None

    def describe(self):
        return {"name": self.name, "nodes": self.nodes, "targets": self.targets,
                "info": self.info}

    def __exit__(self, *exc):
        if self.cluster:
            self.cluster.stop()
        if self.redis:
            self.redis.__exit__()
        return False
