"""Process helpers shared by the local cluster (tools/cluster.py), the peer launcher
(tools/peers.py), the benchmark runner (tools/bench/procs.py) and the observability checks
(stdlib only): free ports, the open-files limit, a throwaway redis-server, and the lifecycle
of a server process — wait for its `listening …` line in its log and for an HTTP 200, fail
early when it exits, stop it (signal, wait, SIGKILL), watch its stdout for a `ready …` line
— and the command form of a launcher (one JSON line, then run until SIGTERM or a process
dies).
"""

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request


def free_port(host="127.0.0.1"):
    """A TCP port that was free a moment ago (for servers that cannot take port 0)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_ports(n, host="127.0.0.1"):
    """n distinct TCP ports that were free a moment ago (all bound at once, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def raise_nofile():
    """Children inherit the soft limit: lift it to the hard limit for 10k+ sockets a node."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


def redis_pong(host, port, timeout=0.5):
    """True when a redis-server on host:port answers PING with PONG."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def kill(proc):
    """SIGKILL a process we started (if it still runs) and reap it; returns its exit code."""
    if proc.poll() is None:
        proc.kill()
    return proc.wait()


def start_redis(directory, host="127.0.0.1", args=(), port=None, *, spawn=subprocess.Popen,
                attempts=20, timeout=10.0, log=True, discard=kill):
    """A throwaway redis-server (no persistence unless `args` turn it on) on a free port:
    returns (process, port). Retries on another port when the chosen one was taken in the
    meantime (`attempts` in all, `timeout` seconds each). With `port` (a restart), that port
    only. Its output goes to `directory`/redis.log (log=False: nowhere); `spawn` starts the
    process (Popen or a registry's), `discard` gets rid of one that did not answer."""
    fixed = port
    for _ in range(attempts if fixed is None else 1):
        port = fixed or free_port(host)
        cmd = ["redis-server", "--port", str(port), "--bind", host,
               "--save", "", "--appendonly", "no", "--dir", directory, *args]
        if log:
            with open(os.path.join(directory, "redis.log"), "ab") as out:
                proc = spawn(cmd, stdout=out, stderr=subprocess.STDOUT)
        else:
            proc = spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if redis_pong(host, port):
                return proc, port
            time.sleep(0.05)
        discard(proc)
    raise RuntimeError("redis-server did not start")


def http_ok(url, timeout=1.0):
    """True when GET url answers 200 within `timeout` seconds."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def check_alive(proc, name, log_path, deadline, what):
    """Raises RuntimeError when `proc` exited, TimeoutError ("<name> <what>") past `deadline`
    (time.monotonic()); both name the log to read."""
    if proc.poll() is not None:
        raise RuntimeError(f"{name} exited with {proc.returncode}; see {log_path}")
    if time.monotonic() > deadline:
        raise TimeoutError(f"{name} {what}; see {log_path}")


def wait_listening(proc, log_path, pattern, name, timeout, offset=0):
    """Waits until the log written by `proc` (from byte `offset` on, for a restart that appends
    to it) has a match of `pattern` (a compiled regex: the server's `listening …` line) and
    returns the match."""
    deadline = time.monotonic() + timeout
    while True:
        with open(log_path, "rb") as f:
            f.seek(offset)
            m = pattern.search(f.read().decode("utf-8", "replace"))
        if m:
            return m
        check_alive(proc, name, log_path, deadline, "printed no listening line")
        time.sleep(0.02)


def wait_http_ok(proc, url, name, log_path, timeout, request_timeout=1.0):
    """Polls url until it answers 200; raises when `proc` exits first or after `timeout`."""
    deadline = time.monotonic() + timeout
    while not http_ok(url, request_timeout):
        check_alive(proc, name, log_path, deadline, "not ready")
        time.sleep(0.05)


def stop_all(procs, sig=signal.SIGTERM, grace=5.0):
    """Sends `sig` to every running process, waits `grace` seconds for them all together,
    then SIGKILLs and reaps the ones still there."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(sig)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class Service:
    """A context manager around start() / stop() (the local cluster, a peer cluster)."""

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def stop_flag():
    """A list that becomes non-empty on SIGTERM (install it before starting anything)."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    return stop


def serve(info, state, stop, failure, poll=0.2):
    """The command form of a launcher: prints `info` as one JSON line (also to the file
    `state`, if given), then waits until `stop` (see stop_flag) or Ctrl-C — returns None —
    or until failure() returns a message — returns it (the caller reports it)."""
    line = json.dumps(info)
    print(line, flush=True)
    if state:
        with open(state, "w") as f:
            f.write(line + "\n")
    try:
        while not stop:
            why = failure()
            if why:
                return why
            time.sleep(poll)
    except KeyboardInterrupt:
        pass
    return None


class ReadyLine:
    """Reads a process's stdout (text or bytes) on a thread, keeping every line in `lines`,
    and notes the first line that `pattern` (a compiled regex, matched at the start) matches —
    a server's or the load generator's `ready …` line: `match`, `line`, `at`
    (time.monotonic()) and `unix` (time.time()). `event` is set then, and also when stdout
    closes without such a line (the process exited: `line` stays None)."""

    def __init__(self, stream, pattern):
        self.stream = stream
        self.pattern = pattern
        self.lines = []
        self.match = self.line = self.at = self.unix = None
        self.event = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for raw in self.stream:
            line = (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw).rstrip("\n")
            self.lines.append(line)
            m = self.pattern.match(line) if self.line is None else None
            if m:
                self.match, self.at, self.unix = m, time.monotonic(), time.time()
                self.line = line
                self.event.set()
        self.event.set()
