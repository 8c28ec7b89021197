"""Unit tests of the newer analysis and report code (no cluster, no load): the hot-path
figures before → after with peers (hotpath.py), W6's per-shard analysis (w6.py), the perf
report parser (perfprof.py), the baseline resolution (baseline.py), the batch linger and the
rendering of a synthetic run with every new section. Run by make bench-selftest or alone:
python3 -m unittest tools.bench.test_hotpath
"""

import os
import tempfile
import unittest

from . import baseline
from . import direct
from . import floor
from . import hotpath
from . import idle
from . import perfprof
from . import report
from . import w6


def w2r(rate, p99, delivered, gw, redis, lost=0):
    r = {"rate": rate, "rate_achieved": rate, "lost": lost, "send_failed": 0,
         "unconfirmed": 0, "connect_failed": 0, "p50_ms": p99 / 3, "p99_ms": p99,
         "p999_ms": p99 * 2, "max_ms": p99 * 3, "delivered": delivered,
         "gateways_cpu_s": gw, "redis_cpu_s": redis, "cmd": "loadgen direct", "via": "api",
         "msgs_per_server_cpu_s": round(delivered / (gw + redis)),
         "gateway_cpu_us_per_msg": round(gw * 1e6 / delivered, 2),
         "redis_cpu_us_per_msg": round(redis * 1e6 / delivered, 2)}
    r["pass"], r["why"] = direct.verdict(r)
    return r


def w1(slope):
    pts = [{"connections": n, "server_rss": [(50 << 20) + n * slope / 3] * 3,
            "server_rss_total": (150 << 20) + n * slope, "redis_rss": 0,
            "sockstat": {"tcp_inuse": 2 * n, "tcp_mem_pages": 0}, "slab": {"TCP": n * 4096}}
           for n in (0, 15000, 30000)]
    return idle.summarize(type("S", (), {"name": "x"})(), pts, [], 3)


def room_run(room_us, p99=3.0):
    """A W2 room result (room.py): W2 API at 5,000 msg/s in rooms, room_us µs of Redis."""
    r = w2r(5000, p99, 50000, 0.8, room_us * 50000 / 1e6)
    r.update(ok=True, channel="room", pairs=300, duration_s=10, wall_s=11.0,
             cmd="loadgen direct --channel room --via api", redis_idle_cpu_s=0.01,
             redis_net_us_per_msg=round(room_us - 0.2, 2),
             redis_per_msg={"evalsha": {"calls": 1.0, "us": 1.8}})
    return r


def system(gw5000, redis5000, p99_2000, sat, room_us, w3, slope, fresh, w4):
    return {
        "W2_api": {"ok": True, "fixed": [w2r(2000, p99_2000, 20000, 1.0, 0.5),
                                         w2r(5000, 10, 50000, gw5000, redis5000)],
                   "saturation": {"rate": sat, "runs": [], "stopped": "x"}, "half": None},
        "W2_batch": {"ok": True, "batch": 100, "fixed": [w2r(5000, 60, 50000, 0.5, 0.25)]},
        "W2_room": room_run(room_us),
        "W3": {"ok": True, "last_p99_ms": w3, "last_p50_ms": w3 / 2, "last_max_ms": w3,
               "subscribers": 10000, "established": 10000, "messages": 30, "rate": 2,
               "p50_ms": 1, "p99_ms": 2, "max_ms": 3, "delivered": 300000,
               "expected_deliveries": 300000, "lost": 0, "gateways_cpu_s": 1,
               "redis_cpu_s": 0.1, "wall_s": 17, "cmd": "loadgen fanout"},
        "W1": {"ok": True, **w1(slope)},
        "W1_fresh": {"ok": True, "bytes_per_conn": fresh, "rss_before": 10 << 20,
                     "rss_after": (10 << 20) + 5000 * fresh, "established": 5000,
                     "failed": 0, "cmd": "loadgen idle"},
        "W4": {"ok": True, "connects_per_gateway_cpu_s": w4, "connect_per_s_wall": 4000,
               "established": 15000, "connections": 15000, "failed": 0, "failures": {},
               "listen_overflows": 0, "concurrency": 256, "handshake_p50_ms": 50,
               "handshake_p99_ms": 130, "handshake_max_ms": 170, "wall_s": 3,
               "gateways_cpu_s": 1.2, "redis_cpu_s": 0.9, "connects_per_server_cpu_s": 7000,
               "netstat_delta": {}, "handshake_rejected_metric": 0, "cmd": "loadgen storm"},
    }


def peer(name, gw, redis, p99):
    return {"ok": True, "peer": name, "label": name, "w1": w1(6000),
            "w2": {"fixed": [w2r(2000, p99, 20000, 5, 1), w2r(5000, 900, 50000, gw, redis)]}}


def synthetic_run():
    # after: 5.0 + 0.5 s for 50,000 messages = 110 µs ... choose figures that meet targets
    res = system(1.5, 0.5, 1.5, 25000, 2.5, 40, 3500, 4500, 12000)
    res["baseline"] = system(5.0, 2.5, 6.0, 5000, 60, 220, 7000, 10000, 5300)
    res["peer_ws"] = peer("ws", 12.0, 2.5, 41.0)
    res["peer_socketio"] = peer("socketio", 13.0, 2.5, 450.0)
    res["peer_sockudo"] = {"ok": True, "skipped": "could not start: not built"}
    res["meta"] = {"date": "d", "git": "abc", "command": "make bench", "quick": True,
                   "results_dir": "target/bench/x", "elapsed_s": 60, "only": ["W6"],
                   "machine": {"nproc": 2, "cpu_model": "cpu", "ram_gib": 1, "kernel": "k",
                               "loadavg_at_start": "0"},
                   "baseline": {"binary": "/b/switchboard-5fa1693", "label": "switchboard-5fa1693",
                                "sha256": "ab" * 32, "version": "switchboard 0.1.0"}}
    res["W6"] = synthetic_w6()
    res["floor"] = None  # floor.section is tested in test_bench.py
    res["profiles"] = {"ok": True, "current": {"rate": 5000, "data": "p.data", "groups": {
        "gateways": {"cpu_s": 1.0, "top": [(12.5, "switchboard", "tokio::io::poll")],
                     "dsos": [(60.0, "[kernel.kallsyms]", None), (30.0, "switchboard", None)],
                     "own": [(20.0, "switchboard", "hashbrown::map::HashMap::get")]},
        "redis": {"cpu_s": 0.5, "top": [(30.0, "redis-server", "luaV_execute")]}}},
        "baseline": {"skipped": "perf record failed (1): boom"}}
    return res


def w6run(roles, cpu_by_pid, evalsha_by_port, delivered=10000, extra=None):
    by_port = {str(p): {"evalsha": {"calls": n, "usec": n * 20}, "ping": {"calls": 5, "usec": 5}}
               for p, n in evalsha_by_port.items()}
    total = {"evalsha": {"calls": sum(evalsha_by_port.values()),
                         "usec": 20 * sum(evalsha_by_port.values())}}
    r = w2r(2000, 3.0, delivered, 1.0, sum(cpu_by_pid.values()))
    r.update(redis_roles=roles, wall_s=10.0, redis_commands=total,
             idle={"seconds": 5.0, "redis_by_pid": {str(k): 0.01 for k in cpu_by_pid}})
    if len(roles) > 1:
        r["redis_by_pid"] = {str(k): v for k, v in cpu_by_pid.items()}
        r["redis_commands_by_port"] = by_port
    r.update(extra or {})
    return r


def synthetic_w6():
    single = w6run([{"role": "single", "port": 1, "pid": 11}], {11: 0.15}, {1: 10000})
    prim = [{"role": "primary", "port": p, "pid": 20 + p} for p in (1, 2, 3)]
    cluster = w6run(prim, {21: 0.06, 22: 0.055, 23: 0.05}, {1: 3400, 2: 3300, 3: 3300})
    repl = prim + [{"role": "replica", "port": p, "pid": 20 + p} for p in (4, 5, 6)]
    replicas = w6run(repl, {21: 0.07, 22: 0.07, 23: 0.07, 24: 0.02, 25: 0.02, 26: 0.02},
                     {1: 3400, 2: 3300, 3: 3300})
    out = {"ok": True, "rate": 2000, "pairs": 1000, "duration_s": 5, "idle_s": 5,
           "run_id": "w6", "runs": {"single": single, "cluster": cluster,
                                    "replicas": replicas}}
    out["analysis"] = w6.analyze(out)
    return out


class HotPath(unittest.TestCase):
    def test_figures(self):
        f = {x["id"]: x for x in hotpath.figures(synthetic_run())}
        cpu = f["w2_cpu"]
        self.assertEqual(cpu["after"], 40.0)    # (1.5 + 0.5) s / 50,000
        self.assertEqual(cpu["before"], 150.0)  # (5.0 + 2.5) s / 50,000
        self.assertEqual(cpu["ratio"], 0.27)
        self.assertEqual(cpu["peers"], {"ws": 290.0, "socketio": 310.0})
        self.assertTrue(cpu["met"])  # ≤ 50 and ≤ 290 / 3
        self.assertEqual(f["w2_batch_cpu"]["after"], 15.0)
        self.assertTrue(f["w2_p99"]["met"])  # 1.5 ms ≤ 2 ms and ≤ 41 / 2
        self.assertEqual(f["w2_sat"]["after"], 25000)
        self.assertEqual(f["redis_user"]["after"], 10.0)
        self.assertEqual(f["redis_room"]["before"], 60)
        self.assertTrue(f["redis_room"]["met"])  # 2.5 µs ≤ 3 µs
        self.assertTrue(f["w1_fresh"]["met"])
        self.assertTrue(f["w4_connects"]["met"])

    def test_peer_bound(self):
        res = synthetic_run()
        res["peer_ws"] = peer("ws", 1.0, 0.5, 2.0)  # 30 µs/msg: ours (40) is not ≤ ⅓ of it
        f = {x["id"]: x for x in hotpath.figures(res)}
        self.assertFalse(f["w2_cpu"]["met"])
        self.assertFalse(f["w2_p99"]["met"])  # 1.5 ms > 2.0 / 2

    def test_no_baseline(self):
        res = synthetic_run()
        del res["baseline"]
        del res["meta"]["baseline"]
        f = hotpath.figures(res)
        self.assertTrue(all(x["before"] is None and x["ratio"] is None for x in f))
        self.assertIn("No baseline in this run", "\n".join(hotpath.section(res)))


class W6(unittest.TestCase):
    def test_shards_and_ratio(self):
        a = synthetic_w6()["analysis"]
        self.assertEqual(a["single"]["redis_us"], 15.0)
        self.assertEqual(a["cluster"]["redis_us"], 16.5)
        self.assertEqual(a["ratio"], 1.1)
        self.assertEqual(a["cluster"]["msg_command"], "evalsha")
        shares = a["cluster"]["shares"]
        self.assertAlmostEqual(sum(shares), 100, delta=0.2)
        self.assertEqual(shares[0], 36.4)
        row = a["cluster"]["rows"][0]
        self.assertEqual(row["handled"], 3400)
        self.assertEqual(row["us_per_handled"], round(0.06e6 / 3400, 2))
        self.assertEqual(row["idle_cpu_s"], 0.02)  # 0.01 s per 5 s, over a 10 s window
        self.assertEqual(a["cluster"]["capacity_msgs_s"], round(1e6 / 6.0))
        self.assertEqual(a["replicas"]["replica_us"], 6.0)
        rows = {r[0]: r for r in w6.rows(synthetic_w6())}
        share = next(v for k, v in rows.items() if "share" in k)
        self.assertEqual(share[3], "yes")
        ratio = next(v for k, v in rows.items() if "÷ one Redis" in k)
        self.assertEqual(ratio[3], "yes")

    def test_uneven_and_failed(self):
        w = synthetic_w6()
        w["runs"]["cluster"]["redis_by_pid"] = {"21": 0.1, "22": 0.03, "23": 0.02}
        w["runs"]["single"] = {"error": "RuntimeError: no redis"}
        w["analysis"] = w6.analyze(w)
        rows = w6.rows(w)
        self.assertEqual(rows[0][3], "**no**")
        self.assertIn("no redis", rows[1][2])
        text = "\n".join(w6.section(w))
        self.assertIn("**failed:** RuntimeError: no redis", text)

    def test_msg_command(self):
        cmds = {"evalsha": {"calls": 1000, "usec": 30000}, "spublish": {"calls": 1000,
                                                                       "usec": 2000},
                "ping": {"calls": 10, "usec": 9e9}}
        self.assertEqual(w6.msg_command(cmds, 1000), "evalsha")
        self.assertIsNone(w6.msg_command(cmds, 100))


PERF = """# Total Lost Samples: 0
#
# Samples: 12K of event 'cpu-clock'
# Event count (approx.): 3012000000
#
# Overhead  Shared Object      Symbol
# ........  .................  ......
#
    12.50%  [kernel.kallsyms]  [k] finish_task_switch.isra.0
     4.02%  switchboard        [.] <tokio::runtime::task::Task as core::ops::Drop>::drop
     2.10%  libc.so.6          [.] __memmove_avx_unaligned_erms

#
# (Tip: something)
"""


class Perf(unittest.TestCase):
    def test_parse(self):
        events, top = perfprof.parse_report(PERF)
        self.assertEqual(events, 3012000000)
        self.assertEqual(top[0], (12.5, "[kernel.kallsyms]", "finish_task_switch.isra.0"))
        self.assertEqual(top[1][2], "<tokio::runtime::task::Task as core::ops::Drop>::drop")
        self.assertEqual(len(top), 3)

    def test_section(self):
        text = "\n".join(perfprof.section(synthetic_run()["profiles"]))
        self.assertIn("baseline: **not profiled** — perf record failed (1): boom", text)
        self.assertIn("| 1 | 12.5 | `tokio::io::poll` (switchboard) |", text)
        self.assertIn("- current: 1.00 CPU-s sampled; by object: [kernel.kallsyms] 60 %, "
                      "switchboard 30 %.", text)
        self.assertIn("| 1 | 20.0 | `hashbrown::map::HashMap::get` (switchboard) |", text)
        _, own = perfprof.parse_report("     6.89%  [.] _mi_page_malloc_zero\n", dso="sb")
        self.assertEqual(own, [(6.89, "sb", "_mi_page_malloc_zero")])
        _, every = perfprof.parse_report(PERF)
        self.assertEqual(perfprof.by_dso(every + [(1.0, "libc.so.6", "memcpy")])[:2],
                         [(12.5, "[kernel.kallsyms]", None), (4.02, "switchboard", None)])


class Baseline(unittest.TestCase):
    def test_resolve(self):
        self.assertIsNone(baseline.resolve("none"))
        self.assertIsNone(baseline.resolve(""))
        with tempfile.TemporaryDirectory() as d:
            b = os.path.join(d, "switchboard-x")
            with open(b, "w") as f:
                f.write("#!/bin/sh\necho switchboard 9.9\n")
            os.chmod(b, 0o755)
            r = baseline.resolve(b)
            self.assertEqual(r["binary"], b)
            self.assertEqual(r["version"], "switchboard 9.9")
            self.assertEqual(len(r["sha256"]), 64)
            with self.assertRaises(FileNotFoundError):
                baseline.resolve(os.path.join(d, "missing"))

    def test_linger(self):
        self.assertEqual(direct.batch_linger_ms(100, 5000, 3), 90)
        self.assertEqual(direct.batch_linger_ms(100, 100000, 3), 5)


class Render(unittest.TestCase):
    def test_render_everything(self):
        text = report.render(synthetic_run())
        for s in ("## The hot path: before → after", "## Other targets",
                  "## W6 Redis Cluster", "## Profiles (perf, W2 API)",
                  "## Measurement floor",
                  "Before = the baseline binary `/b/switchboard-5fa1693`",
                  "| W2 API, 5,000 msg/s: server CPU µs per delivered message (gateways + "
                  "Redis) | 150 µs | 40.0 µs | 0.27× | ≤ 50 µs and ≤ ⅓ of the best peer | yes | "
                  "ws 290 µs · Socket.IO 310 µs |",
                  "W6 Redis CPU per message, Cluster (3 primaries) ÷ one Redis",
                  "Per redis-server, Redis Cluster, 3 primaries (messages handled = `evalsha`",
                  "## Details of the baseline (before)"):
            self.assertIn(s, text)
        self.assertIn("Not run", "\n".join(floor.section(None)))


if __name__ == "__main__":
    unittest.main(verbosity=1)
