"""Unit tests of the shared process helpers (tools/proc.py) on small real processes: the
`listening` line wait, the HTTP readiness wait, a process that exits or never gets ready,
stopping a group of processes, free ports and a throwaway redis-server.

    python3 -m unittest tools.test_proc
"""

import http.server
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from . import proc

LISTENING = re.compile(r"listening port=(\d+)")


def python(code, log_path):
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT)


class Ports(unittest.TestCase):
    def test_free_ports_are_distinct_and_bindable(self):
        ports = proc.free_ports(5)
        self.assertEqual(len(set(ports)), 5)
        for p in ports + [proc.free_port()]:
            with socket.socket() as s:
                s.bind(("127.0.0.1", p))


class Lifecycle(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="tools-test-proc-")
        self.log = os.path.join(self.dir, "server.log")
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            proc.kill(p)
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, code):
        p = python(code, self.log)
        self.procs.append(p)
        return p

    def test_listening_line(self):
        p = self.start("import time; time.sleep(0.2); print('listening port=4321', flush=True); time.sleep(30)")
        m = proc.wait_listening(p, self.log, LISTENING, "server", timeout=10)
        self.assertEqual(m.group(1), "4321")

    def test_listening_line_after_offset(self):
        with open(self.log, "w") as f:
            f.write("listening port=1111\n")
        offset = os.path.getsize(self.log)
        p = self.start("import time; time.sleep(0.2); print('listening port=2222', flush=True); time.sleep(30)")
        m = proc.wait_listening(p, self.log, LISTENING, "server", timeout=10, offset=offset)
        self.assertEqual(m.group(1), "2222")

    def test_exit_before_listening(self):
        p = self.start("import sys; print('boom'); sys.exit(3)")
        with self.assertRaisesRegex(RuntimeError, r"server exited with 3; see .*server\.log"):
            proc.wait_listening(p, self.log, LISTENING, "server", timeout=10)

    def test_no_listening_line_in_time(self):
        p = self.start("import time; time.sleep(30)")
        with self.assertRaisesRegex(TimeoutError, "server printed no listening line"):
            proc.wait_listening(p, self.log, LISTENING, "server", timeout=0.3)

    def test_http_ready(self):
        port = proc.free_port()
        p = self.start(f"import time, http.server as h; time.sleep(0.3); "
                       f"h.HTTPServer(('127.0.0.1', {port}), h.SimpleHTTPRequestHandler).serve_forever()")
        self.assertFalse(proc.http_ok(f"http://127.0.0.1:{port}/", timeout=0.2))
        proc.wait_http_ok(p, f"http://127.0.0.1:{port}/", "server", self.log, timeout=10)
        self.assertTrue(proc.http_ok(f"http://127.0.0.1:{port}/"))

    def test_http_not_ready(self):
        p = self.start("import time; time.sleep(30)")
        with self.assertRaisesRegex(TimeoutError, "server not ready"):
            proc.wait_http_ok(p, f"http://127.0.0.1:{proc.free_port()}/", "server", self.log,
                              timeout=0.3, request_timeout=0.1)

    def test_http_error_status_is_not_ready(self):
        class NotReady(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(503)
                self.end_headers()

            def log_message(self, *a):
                pass

        srv = http.server.HTTPServer(("127.0.0.1", 0), NotReady)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        try:
            self.assertFalse(proc.http_ok(f"http://127.0.0.1:{srv.server_port}/readyz"))
        finally:
            srv.shutdown()
            srv.server_close()

    def test_stop_all_terminates_then_kills(self):
        polite = self.start("import time; time.sleep(30)")
        stubborn = self.start("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                              "print('listening port=1', flush=True); time.sleep(30)")
        proc.wait_listening(stubborn, self.log, LISTENING, "stubborn", timeout=10)
        t0 = time.monotonic()
        proc.stop_all([polite, stubborn], signal.SIGTERM, grace=0.5)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertEqual(polite.returncode, -signal.SIGTERM)
        self.assertEqual(stubborn.returncode, -signal.SIGKILL)

    def test_kill_returns_the_exit_code(self):
        p = self.start("import time; time.sleep(30)")
        self.assertEqual(proc.kill(p), -signal.SIGKILL)
        self.assertEqual(proc.kill(p), -signal.SIGKILL)  # already gone: same code


class ReadyLines(unittest.TestCase):
    READY = re.compile(r"ready connections=(\d+) failed=(\d+)")

    def watch(self, code, text):
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=text)
        self.addCleanup(proc.kill, p)
        self.addCleanup(p.stdout.close)
        return p, proc.ReadyLine(p.stdout, self.READY)

    def test_first_ready_line(self):
        for text in (True, False):
            p, r = self.watch("import time; print('hello'); print('ready connections=3 failed=1', flush=True);"
                              "print('ready connections=9 failed=9', flush=True); time.sleep(0.2); print('bye')", text)
            self.assertTrue(r.event.wait(10))
            self.assertEqual(r.match.groups(), ("3", "1"))
            self.assertEqual(r.line, "ready connections=3 failed=1")
            self.assertIsNotNone(r.at)
            p.wait()
            r.thread.join(5)
            self.assertEqual(r.lines, ["hello", "ready connections=3 failed=1", "ready connections=9 failed=9", "bye"])

    def test_exit_without_ready_line_wakes_the_waiter(self):
        p, r = self.watch("print('ready soon?')", True)
        self.assertTrue(r.event.wait(10))
        self.assertIsNone(r.line)
        self.assertIsNone(r.match)


class Serve(unittest.TestCase):
    def run_serve(self, stop, failure):
        import contextlib
        import io
        import json

        out = io.StringIO()
        with tempfile.NamedTemporaryFile("r", suffix=".json") as state, contextlib.redirect_stdout(out):
            why = proc.serve({"a": 1}, state.name, stop, failure, poll=0.01)
            self.assertEqual(json.loads(state.read()), {"a": 1})
        self.assertEqual(json.loads(out.getvalue()), {"a": 1})
        return why

    def test_stops_on_the_flag(self):
        calls = []
        stop = []

        def failure():
            calls.append(1)
            if len(calls) == 3:
                stop.append(1)
            return None

        self.assertIsNone(self.run_serve(stop, failure))
        self.assertEqual(len(calls), 3)

    def test_returns_the_failure(self):
        self.assertEqual(self.run_serve([], lambda: "node-1 exited with -9"), "node-1 exited with -9")

    def test_service_context_manager(self):
        class S(proc.Service):
            events = []

            def start(self):
                self.events.append("start")

            def stop(self):
                self.events.append("stop")

        with self.assertRaises(ZeroDivisionError):
            with S():
                1 / 0
        self.assertEqual(S.events, ["start", "stop"])


@unittest.skipUnless(shutil.which("redis-server"), "redis-server not installed")
class Redis(unittest.TestCase):
    def test_start_and_restart_on_the_same_port(self):
        d = tempfile.mkdtemp(prefix="tools-test-redis-")
        try:
            p, port = proc.start_redis(d)
            self.assertTrue(proc.redis_pong("127.0.0.1", port))
            self.assertTrue(os.path.exists(os.path.join(d, "redis.log")))
            proc.kill(p)
            self.assertFalse(proc.redis_pong("127.0.0.1", port))
            p2, port2 = proc.start_redis(d, port=port, log=False)
            self.assertEqual(port2, port)
            self.assertTrue(proc.redis_pong("127.0.0.1", port))
            proc.kill(p2)
        finally:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
