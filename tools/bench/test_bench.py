"""Unit tests of the benchmark runner's analysis and report (no cluster, no load):
/proc readers on this process, the W1 slope and per-socket kernel division, the W2
pass/fail verdict and efficiency pick, the W2 room run (its loadgen command, sizes and
figures), and BENCHMARKS.md rendering of a synthetic run (met / not met / failed / skipped
peer). Run with test_hotpath.py's tests: python3 -m unittest discover -s tools/bench -t .
(make bench-selftest; make test-tools runs every test of tools/).
"""

import os
import time
import unittest

from . import config
from . import direct
from . import hotpath
from . import idle
from .. import procstat
from . import report
from . import report_details
from . import room
from .test_hotpath import room_run, synthetic_run

KIB = 1024


class ProcStat(unittest.TestCase):
    def test_cpu_grows_with_work(self):
        pid = os.getpid()
        a = procstat.cpu_of([pid])
        t = time.process_time()
        while time.process_time() - t < 0.3:
            sum(range(10000))
        b = procstat.cpu_of([pid])
        self.assertGreaterEqual(procstat.cpu_delta(a, b), 0.2)
        self.assertEqual(procstat.cpu_seconds(2 ** 22 + 12345), 0.0)  # no such pid

    def test_readers(self):
        self.assertGreater(procstat.rss_bytes(os.getpid()), 1 << 20)
        s = procstat.sockstat()
        self.assertIn("tcp_inuse", s)
        self.assertIn("tcp_mem_pages", s)
        self.assertIn("ListenOverflows", procstat.netstat_tcpext())
        self.assertGreaterEqual(procstat.machine()["nproc"], 1)


def point(conns, rss, inuse, mem_pages, slab, nodes=2):
    return {"connections": conns, "server_rss": [rss / nodes] * nodes, "server_rss_total": rss,
            "redis_rss": 0, "sockstat": {"tcp_inuse": inuse, "tcp_mem_pages": mem_pages},
            "slab": {"TCP": slab}}


class Idle(unittest.TestCase):
    def test_slope_and_kernel_division(self):
        base = 100 << 20
        pts = [point(n, base + n * 6 * KIB + (4096 if n == 2000 else 0), 50 + 2 * n,
                     10 + n // 4, 1000 + n * 2 * 3 * KIB) for n in (0, 2000, 4000, 6000)]
        s = idle.summarize(type("S", (), {"name": "x"})(), pts, [], 2)
        self.assertAlmostEqual(s["user_bytes_per_conn"], 6 * KIB, delta=16)
        self.assertAlmostEqual(s["per_node_slopes"][0], 6 * KIB, delta=16)
        self.assertEqual(s["sockets_per_conn"], 2.0)
        # mem pages grow n/4 per n connections = 1024 B per connection = 512 B per socket
        self.assertAlmostEqual(s["kernel_tcp_bytes_per_conn"], 512, delta=1)
        self.assertAlmostEqual(s["kernel_slab_bytes_per_conn"], 3 * KIB, delta=1)
        self.assertAlmostEqual(s["total_bytes_per_conn"], 6 * KIB + 512, delta=16)


def w2run(rate, p99, lost=0, achieved=None, eff=50000):
    r = {"rate": rate, "rate_achieved": achieved if achieved is not None else rate,
         "lost": lost, "send_failed": 0, "unconfirmed": 0, "connect_failed": 0, "p50_ms": 0.3,
         "p99_ms": p99, "p999_ms": p99 * 2, "max_ms": p99 * 3, "msgs_per_server_cpu_s": eff,
         "delivered": rate * 5, "gateways_cpu_s": 1.0, "redis_cpu_s": 0.5,
         "gateway_cpu_us_per_msg": 10.0, "cmd": "loadgen direct", "via": "api"}
    r["pass"], r["why"] = direct.verdict(r)
    return r


class Direct(unittest.TestCase):
    def test_verdict(self):
        self.assertTrue(w2run(2000, 0.8)["pass"])
        self.assertFalse(w2run(2000, 0.8, lost=1)["pass"])
        self.assertFalse(w2run(2000, 0.8, achieved=1800)["pass"])
        self.assertFalse(w2run(2000, direct.P99_LIMIT_MS + 1)["pass"])

    def fake_search(self, limit, known=(), start=4000):
        calls = []

        def one(ctx, sut, rate, duration, via, batch, pairs, tag=""):
            calls.append(rate)
            return w2run(rate, 1.0 if rate <= limit else 99.0)
        real = direct.one
        direct.one = one
        try:
            sat = direct.saturate(None, None, "api", None, start, 1, 10 ** 6, 60, 10,
                                  known=known)
        finally:
            direct.one = real
        return sat, calls

    def test_saturation_search(self):
        sat, calls = self.fake_search(10000)
        self.assertEqual(calls[:4], [4000, 6000, 9000, 13500])
        self.assertLessEqual(sat["rate"], 10000)
        self.assertGreaterEqual(sat["rate"], 9000)
        self.assertIn("failed at", sat["stopped"])
        # nothing passes at the start: halve until a run passes, then bisect
        sat, calls = self.fake_search(1500)
        self.assertEqual(calls[:3], [4000, 2000, 1000])
        self.assertTrue(1000 <= sat["rate"] <= 1500)
        # a failing fixed rate below the start: search below it
        sat, calls = self.fake_search(800, known=[w2run(2000, 99.0)])
        self.assertEqual(calls[0], 1000)
        self.assertTrue(sat["rate"] is not None and sat["rate"] <= 800)
        sat, _ = self.fake_search(100, known=[w2run(2000, 99.0)])
        self.assertIsNone(sat["rate"])

    def test_best_efficiency_ignores_failed_runs(self):
        w = {"fixed": [w2run(2000, 0.5, eff=30000)],
             "saturation": {"rate": 8000, "runs": [w2run(8000, 2, eff=60000),
                                                   w2run(12000, 90, eff=90000)]}}
        self.assertEqual(direct.best_efficiency(w)["rate"], 8000)


class QuietCtx:
    def log(self, msg):
        pass


class FakeSut:
    name = "switchboard"
    targets = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
    redis_pids = []


def fake_direct_run(calls):
    """A stand-in for common.run_loadgen: records the loadgen args, answers a W2 result of
    5,000 messages with 0.01 s of Redis CPU and INFO commandstats."""
    def run_loadgen(ctx, sut, label, args, **kw):
        calls.append((label, [str(a) for a in args], kw))
        return {"cmd": "loadgen " + " ".join(str(a) for a in args), "log": "x.log", "rc": 0,
                "result": {"messages": {"scheduled": 5000, "sent": 5000, "acked": 5000,
                                        "delivered": 5000, "lost": 0, "rate_achieved": 5000},
                           "latency_us": {"p50": 500, "p90": 900, "p99": 2000, "p999": 3000,
                                          "max": 4000}},
                "cpu": {"wall_s": 2.0, "gateways_cpu_s": 0.25, "redis_cpu_s": 0.01},
                "redis_commands": {"evalsha": {"calls": 5000, "usec": 6000},
                                   "spublish": {"calls": 2, "usec": 400},
                                   "ping": {"calls": 4, "usec": 4}}}
    return run_loadgen


class Room(unittest.TestCase):
    def test_sizes_are_w2_apis(self):
        for cfg in (config.FULL, config.QUICK):
            r, w2 = cfg["room"], cfg["w2"]
            self.assertEqual((r["pairs"], r["duration"]), (w2["pairs"], w2["duration"]))
            self.assertEqual(r["rate"], 5000)
            self.assertIn(r["rate"], w2["fixed_rates"])
        with self.assertRaises(ValueError):
            config.room({"fixed_rates": [2000], "duration": 1, "pairs": 1}, 1)

    def test_run_is_direct_in_rooms_through_the_api(self):
        calls = []
        real = direct.run_loadgen
        direct.run_loadgen = fake_direct_run(calls)
        try:
            r = room.run(QuietCtx(), FakeSut(), {"rate": 5000, "duration": 1, "pairs": 300,
                                           "idle_s": 0})
        finally:
            direct.run_loadgen = real
        label, args, kw = calls[0]
        self.assertEqual(label, "w2-switchboard-api-5000-room")
        line = " ".join(args)
        for part in ("direct --pairs 300 --rate 5000 --duration 1 --via api",
                     "--channel room"):
            self.assertIn(part, line)
        self.assertNotIn("--batch", line)
        self.assertTrue(kw["redis_stats"])  # INFO commandstats over the window
        self.assertEqual(kw["window_s"], 1 + direct.DRAIN_S)  # W2's window
        self.assertEqual(r["channel"], "room")
        self.assertEqual(r["redis_cpu_us_per_msg"], 2.0)  # 0.01 s / 5,000 delivered
        # Commands ≥ 0.1 µs per message are listed (spublish 0.08 µs is not).
        self.assertEqual(r["redis_per_msg"], {"evalsha": {"calls": 1.0, "us": 1.2}})
        self.assertTrue(r["pass"])
        # The user-channel W2 run keeps its 0.5 µs threshold and says which channel it used.
        calls.clear()
        direct.run_loadgen = fake_direct_run(calls)
        try:
            u = direct.one(QuietCtx(), FakeSut(), 5000, 1, via="api", pairs=300)
        finally:
            direct.run_loadgen = real
        self.assertNotIn("--channel", calls[0][1])
        self.assertEqual(u["channel"], "user")
        self.assertEqual(list(u["redis_per_msg"]), ["evalsha"])

    def test_idle_scaled_to_the_window(self):
        r = room.summarize({"delivered": 50000, "redis_cpu_s": 0.15, "wall_s": 11.0},
                           {"seconds": 2.0, "redis_cpu_s": 0.02})
        self.assertEqual(r["redis_idle_cpu_s"], 0.11)
        self.assertEqual(r["redis_net_us_per_msg"], 0.8)  # (0.15 - 0.11) s / 50,000
        r = room.summarize({"delivered": 0, "redis_cpu_s": 0.0, "wall_s": 1.0}, None)
        self.assertIsNone(r["redis_net_us_per_msg"])

    def test_figure_and_details(self):
        res = synthetic_run()
        f = {x["id"]: x for x in hotpath.figures(res)}["redis_room"]
        self.assertEqual(f["after"], 2.5)
        self.assertIn("--channel room --via api", f["definition"])
        self.assertEqual(f["note_after"], "")
        res["W2_room"] = room_run(2.5, p99=80.0)
        f = {x["id"]: x for x in hotpath.figures(res)}["redis_room"]
        self.assertEqual(f["note_after"], " (run: p99 80.0 ms > 50 ms)")
        text = "\n".join(report_details.room_section(
            res["W2_room"], "### W2 room", user=direct_fixed(res, 5000)))
        self.assertIn("| 5,000 rooms |", text)
        self.assertIn("| 5,000 user channels (W2 API) |", text)
        self.assertIn("rooms evalsha 1.8 µs (1.0 calls)", text)
        self.assertIn("`loadgen direct --channel room --via api`", text)
        full = report.render(res)
        self.assertIn("### W2 room messages without history (Switchboard)", full)
        self.assertIn("Redis CPU µs per room message without history (W2 API, 5,000 msg/s)",
                      full)


def direct_fixed(res, rate):
    return next(r for r in res["W2_api"]["fixed"] if r["rate"] == rate)


def synthetic():
    w1 = idle.summarize(type("S", (), {"name": "x"})(),
                        [point(n, (50 << 20) + n * 5 * KIB, 2 * n, 0, n * 8 * KIB, nodes=3)
                         for n in (0, 15000, 30000)], [], 3)
    w1["ok"] = True
    api = {"ok": True, "fixed": [w2run(2000, 0.7, eff=45000)],
           "saturation": {"rate": 8000, "runs": [w2run(8000, 3, eff=72000),
                                                 w2run(12000, 80, eff=80000)],
                          "stopped": "failed at 12000/s"},
           "half": w2run(4000, 1.5, eff=60000)}
    ws = {"ok": True, "fixed": [w2run(2000, 1.7, eff=30000)], "saturation": None, "half": None}
    return {"meta": {"date": "d", "git": "abc", "command": "make bench", "quick": False,
                     "results_dir": "target/bench/x", "elapsed_s": 60,
                     "machine": {"nproc": 2, "cpu_model": "cpu", "ram_gib": 1, "kernel": "k",
                                 "loadavg_at_start": "0"}},
            "W1": w1, "W2_api": api, "W2_ws": ws,
            "W2_batch": {"ok": False, "error": "RuntimeError: boom", "trace": "tb"},
            "peer_sockudo": {"ok": True, "skipped": "could not start: not built"},
            "floor": {"ok": True, "cmd": "switchboard-loadgen selftest", "rc": 0,
                      "result": floor_result()}}


def floor_result():
    stat = {"p50": 12, "p90": 30, "p99": 80, "p999": 1500, "max": 23456, "mean": 15.0,
            "count": 3000}
    return {"mode": "selftest", "timer": "precise", "pacer_slack_ns": 1, "duration_s": 16.2,
            "schedule": [{"rate": 1000.0, "tasks": 100, "seconds": 3.0, "error_us": stat,
                          "early": 0, "cpu_us_per_msg": 60.0, "cpu_pct": 6.0,
                          "pacer_cpu_pct": 3.0}],
            "round_trip": [{"via": "ws", "rate": 2000.0, "pairs": 20, "seconds": 3.0,
                            "latency_us": stat, "send_lag_us": stat, "cpu_us_per_msg": 70.0,
                            "reflector_cpu_us_per_msg": 20.0}],
            "checks": [{"name": "schedule_early", "limit": 0, "value": 0, "ok": True}]}


class Report(unittest.TestCase):
    def test_rows(self):
        rows = {r[0]: r for r in report.rows(synthetic())}
        w1 = next(v for k, v in rows.items() if k.startswith("W1 memory"))
        self.assertIn("5.00 KiB", w1[2])
        self.assertEqual(w1[3], "yes, aim too")
        slab = next(v for k, v in rows.items() if "slab" in k)
        self.assertEqual(slab[3], "yes (aim not yet)")  # 5 KiB RSS + 4 KiB slab per socket
        self.assertEqual(rows["W2 p99 at 2,000 msg/s (API)"][3], "yes")
        self.assertEqual(rows["W2 p99 at 2,000 msg/s (WebSocket publish)"][3], "**no**")
        eff = next(v for k, v in rows.items() if k.startswith("W2 messages per server CPU-second (API"))
        self.assertIn("8,000 msg/s", eff[0])
        self.assertEqual(eff[3], "yes, aim too")
        self.assertIn("boom", rows["W2 (API, /v1/batch)"][2])
        self.assertIn("not run", next(v for k, v in rows.items() if k.startswith("W3"))[2])

    def test_render(self):
        text = report.render(synthetic())
        self.assertIn("| figure | target | measured | met? |", text)
        self.assertIn("sockudo: **skipped** — could not start: not built", text)
        self.assertIn("**Failed:** RuntimeError: boom", text)
        self.assertIn("## Measurement floor (the load generator itself)", text)
        self.assertIn("| 1,000/s | 12 µs | 80 µs | 1.5 ms | 23 ms | 0 | 60.0 (6.0 %) |", text)
        self.assertIn("| via ws, 2,000 msg/s, 20 pairs | 12 µs | 80 µs |", text)


if __name__ == "__main__":
    unittest.main(verbosity=1)
