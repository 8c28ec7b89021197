"""Start a 3-node cluster of one PEER server for the side-by-side benchmark (stdlib only).

Peers (the servers are in loadtest/peers/, see its README.md; install them first with `make peers`):
  socketio  Socket.IO 4 + @socket.io/redis-adapter   (loadgen --protocol socketio)
  socketio-sharded  the same with createShardedAdapter (Redis 7 SPUBLISH, per-room channels)
  ws        plain `ws` + `ioredis`                   (loadgen --protocol plain)
  sockudo   Sockudo (Pusher protocol), Redis adapter (loadgen --protocol pusher
            --pusher-app-id bench-app --pusher-key bench-key --pusher-secret bench-secret)

As a command: starts the nodes on free ports against an existing Redis (--redis-port P; without
it a private redis-server is started on a free port), prints ONE JSON line

    {"peer","targets":["127.0.0.1:port",…],"api":["http://127.0.0.1:port",…],"pids":[…],
     "redis_port", "logs", "pusher": {"app_id","key","secret"} (sockudo only)}

then runs until SIGTERM/SIGINT (exit 1 if a node dies meanwhile):

    python3 -m tools.peers socketio|socketio-sharded|ws|sockudo --nodes 3 --redis-port P [--state FILE]

As a library (the bench runner):

    from tools.peers import Peer
    with Peer("ws", nodes=3, redis_port=P) as p:
        p.targets, p.api, p.pids, p.info()   # info() is the JSON line's object
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

from .proc import (Service, free_port, kill, raise_nofile, serve, start_redis, stop_all, stop_flag,
                   wait_http_ok, wait_listening)

# The peer servers (Node scripts, their node_modules, Sockudo's config template).
HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "loadtest", "peers")
LISTENING = re.compile(r"listening port=(\d+)")
PEERS = ("socketio", "socketio-sharded", "ws", "sockudo")
SCRIPTS = {"socketio": "socketio-server.mjs", "socketio-sharded": "socketio-server.mjs", "ws": "ws-server.mjs"}
SOCKUDO_CONFIG = os.path.join(HERE, "sockudo.config.json")


def sockudo_bin():
    """Where build-sockudo.sh installs the binary (SOCKUDO_BIN overrides)."""
    if os.environ.get("SOCKUDO_BIN"):
        return os.environ["SOCKUDO_BIN"]
    root = os.environ.get("SOCKUDO_ROOT") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "switchboard-peers", "sockudo")
    return os.path.join(root, "bin", "sockudo")


def sockudo_app():
    """The one app of the Sockudo config template: {"app_id","key","secret"}."""
    with open(SOCKUDO_CONFIG) as f:
        app = json.load(f)["app_manager"]["array"]["apps"][0]
    return {"app_id": app["id"], "key": app["key"], "secret": app["secret"]}


class Peer(Service):
    def __init__(self, peer, nodes=3, redis_port=None, host="127.0.0.1", start_timeout=60.0, env=None):
        if peer not in PEERS:
            raise ValueError(f"unknown peer {peer!r} (one of {', '.join(PEERS)})")
        self.peer = peer
        self.n = nodes
        self.host = host
        self.redis_port = redis_port
        self.start_timeout = start_timeout
        self.env = dict(env or {})
        self.dir = tempfile.mkdtemp(prefix=f"peer-{peer}-")
        self.ports = []
        self.procs = []
        self.redis_proc = None
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def targets(self):
        return [f"{self.host}:{p}" for p in self.ports]

    @property
    def api(self):
        return [f"http://{self.host}:{p}" for p in self.ports]

    @property
    def pids(self):
        return [p.pid for p in self.procs]

    def log_path(self, i):
        return os.path.join(self.dir, f"{self.peer}-{i + 1}.log")

    def info(self):
        d = {"peer": self.peer, "targets": self.targets, "api": self.api, "pids": self.pids,
             "redis_port": self.redis_port, "logs": self.dir}
        if self.peer == "sockudo":
            d["pusher"] = sockudo_app()
        return d

    def start(self):
        raise_nofile()
        try:
            if self.redis_port is None:
                self._start_redis()
            for i in range(self.n):
                self._start_node(i)
            for i in range(self.n):
                self._wait_ready(i)
        except BaseException:
            self.stop(keep_logs=True)
            raise
        return self

    def stop(self, keep_logs=False):
        if self._stopped:
            return
        self._stopped = True
        stop_all(self.procs, signal.SIGTERM, grace=5)
        if self.redis_proc:
            kill(self.redis_proc)
        if keep_logs:
            print(f"peers: logs kept in {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def dead(self):
        """Index and exit code of the first node that exited, or None."""
        for i, p in enumerate(self.procs):
            if p.poll() is not None:
                return i, p.returncode
        return None

    # -- processes ---------------------------------------------------------------------

    def _start_redis(self):
        self.redis_proc, self.redis_port = start_redis(self.dir, self.host)

    def _node_cmd(self, i):
        """(argv, env, cwd) of node i; sockudo gets its port now, node servers take port 0."""
        if self.peer in SCRIPTS:
            if not os.path.isdir(os.path.join(HERE, "node_modules")):
                raise FileNotFoundError("loadtest/peers/node_modules missing: run `make peers`")
            env = dict(os.environ, NODE_ENV="production")
            env.update(self.env)
            argv = ["node", os.path.join(HERE, SCRIPTS[self.peer]), "--port", "0", "--host", self.host,
                    "--redis-host", self.host, "--redis-port", str(self.redis_port)]
            if self.peer == "socketio-sharded":
                argv += ["--adapter", "sharded"]
            return argv, env, HERE
        binary = sockudo_bin()
        if not os.access(binary, os.X_OK):
            raise FileNotFoundError(f"sockudo not built ({binary}): run `make peers`")
        with open(SOCKUDO_CONFIG) as f:
            cfg = json.load(f)
        port = free_port(self.host)
        self.ports.append(port)
        cfg["host"] = self.host
        cfg["port"] = port
        cfg["metrics"]["host"] = self.host
        cfg["metrics"]["port"] = free_port(self.host)
        cfg["database"]["redis"]["host"] = self.host
        cfg["database"]["redis"]["port"] = self.redis_port
        cfg["instance"] = {"process_id": f"{self.peer}-{i + 1}"}
        path = os.path.join(self.dir, f"sockudo-{i + 1}.json")
        with open(path, "w") as f:
            json.dump(cfg, f, indent=2)
        # A clean environment: Sockudo lets many variables (PORT, HOST, REDIS_URL, DEBUG, …)
        # override the config file. cwd = the temp dir, so no ./config/config.* is picked up.
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TZ") if k in os.environ}
        env["RUST_LOG"] = os.environ.get("SOCKUDO_RUST_LOG", "warn")
        env.update(self.env)
        return [binary, "--config", path], env, self.dir

    def _start_node(self, i):
        argv, env, cwd = self._node_cmd(i)
        with open(self.log_path(i), "ab") as log:
            self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                               cwd=cwd, stdin=subprocess.DEVNULL))
        if self.peer == "sockudo":
            return
        m = wait_listening(self.procs[i], self.log_path(i), LISTENING, f"{self.peer} node {i + 1}",
                           self.start_timeout)
        self.ports.append(int(m.group(1)))

    def _wait_ready(self, i):
        path = "/up/" + sockudo_app()["app_id"] if self.peer == "sockudo" else "/healthz"
        url = f"http://{self.host}:{self.ports[i]}{path}"
        wait_http_ok(self.procs[i], url, f"{self.peer} node {i + 1}", self.log_path(i), self.start_timeout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("peer", choices=PEERS)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--redis-port", type=int, help="an existing redis-server on 127.0.0.1 (default: start one)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--state", help="also write the JSON line to this file")
    a = ap.parse_args()
    stop = stop_flag()
    with Peer(a.peer, nodes=a.nodes, redis_port=a.redis_port, host=a.host) as p:
        def failure():
            d = p.dead()
            return d and f"{a.peer} node {d[0] + 1} exited with {d[1]}; see {p.log_path(d[0])}"

        why = serve(p.info(), a.state, stop, failure)
        if why:
            print(f"peers: {why}", file=sys.stderr)
            p.stop(keep_logs=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
