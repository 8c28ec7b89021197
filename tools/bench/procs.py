"""Processes the benchmark runner starts: a registry that kills them all at the end (also on
Ctrl-C, SIGTERM and errors), a throwaway redis-server on a free port (tools/proc.py's, in
the registry), and the load generator (`switchboard-loadgen`) run with its stdout line
protocol (`ready connections=<n> failed=<m>`).
Imported by bench.py and the workload modules; not run on its own.
"""

import os
import re
import signal
import subprocess
import threading
import time

from .. import resp
from ..proc import ReadyLine, start_redis

_LIVE = []  # Popen objects started by this runner (each in its own session / process group)
_LOCK = threading.Lock()


def spawn(cmd, **kw):
    """Popen in a new session (so its whole process group can be stopped) and register it."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    proc = subprocess.Popen(cmd, start_new_session=True, **kw)
    with _LOCK:
        _LIVE.append(proc)
    return proc


def stop(proc, grace=5.0, sig=signal.SIGTERM):
    """Signal the process group of a process we started, wait, SIGKILL it after `grace`."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    else:
        # The leader is gone; its workers (same group) may still run.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    with _LOCK:
        if proc in _LIVE:
            _LIVE.remove(proc)


def stop_all():
    with _LOCK:
        procs = list(_LIVE)
    for proc in reversed(procs):
        stop(proc, grace=3.0)


class Redis:
    """redis-server on a free loopback port (never 6379), no persistence. Context manager."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.port = None
        self.proc = None

    def __enter__(self):
        # In this runner's registry (its own process group), output discarded.
        self.proc, self.port = start_redis(self.workdir, args=["--maxclients", "10000"],
                                           spawn=spawn, attempts=5, timeout=5.0, log=False,
                                           discard=stop)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def __exit__(self, *exc):
        stop(self.proc)


def redis_command(port, *args, timeout=5.0):
    """One command to a local Redis over RESP; returns the reply as text (bulk/simple)."""
    return resp.command(port, *args, timeout=timeout)


def redis_commandstats(port):
    """{command: {"calls", "usec"}} from INFO commandstats."""
    out = {}
    for line in redis_command(port, "INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, _, vals = line[8:].partition(":")
            kv = dict(v.split("=") for v in vals.split(","))
            out[name] = {"calls": int(kv["calls"]), "usec": int(kv["usec"])}
    return out


READY_RE = re.compile(r"^ready connections=(\d+) failed=(\d+)")


class Loadgen:
    """One switchboard-loadgen run. start() returns at once; wait_ready() blocks until the
    `ready …` line; finish() waits for the exit and returns (exit code, result JSON or None)."""

    def __init__(self, binary, args, json_path, log_path):
        self.cmd = [binary] + [str(a) for a in args] + ["--json", json_path]
        self.json_path = json_path
        self.log_path = log_path
        self.proc = None
        self._out = None           # the ReadyLine reading its stdout

    def start(self):
        if os.path.exists(self.json_path):
            os.remove(self.json_path)
        self._log = open(self.log_path, "w")
        self._log.write("$ " + " ".join(self.cmd) + "\n")
        self._log.flush()
        self.started_at = time.monotonic()
        self.proc = spawn(self.cmd, stdout=subprocess.PIPE, stderr=self._log, text=True)
        self._out = ReadyLine(self.proc.stdout, READY_RE)
        return self

    @property
    def ready(self):
        """(connections, failed) once the ready line was seen, else None."""
        m = self._out.match if self._out else None
        return (int(m.group(1)), int(m.group(2))) if m else None

    @property
    def ready_at(self):
        """time.monotonic() when the ready line arrived."""
        return self._out.at if self._out else None

    @property
    def stdout_lines(self):
        return self._out.lines if self._out else []

    def wait_ready(self, timeout):
        """(connections, failed); raises when the loadgen exits or times out before `ready`."""
        if not self._out.event.wait(timeout):
            raise RuntimeError(f"loadgen not ready after {timeout:.0f}s ({self.log_path})")
        if self.ready is None:
            self.proc.wait()
            raise RuntimeError(f"loadgen exited with {self.proc.returncode} before ready: "
                               f"{self.tail()}")
        return self.ready

    def signal(self, sig=signal.SIGTERM):
        """Signal the loadgen parent only (it stops its workers and writes its result)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def finish(self, timeout):
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop(self.proc)
            raise RuntimeError(f"loadgen did not finish within {timeout:.0f}s ({self.log_path})")
        finally:
            self._log.close()
        stop(self.proc)  # reap stray workers of the group, unregister
        result = None
        if os.path.exists(self.json_path):
            import json
            with open(self.json_path) as f:
                result = json.load(f)
        return self.proc.returncode, result

    def tail(self, n=6):
        try:
            with open(self.log_path) as f:
                lines = f.read().splitlines()
        except OSError:
            lines = []
        return " | ".join((lines + self.stdout_lines)[-n:])
