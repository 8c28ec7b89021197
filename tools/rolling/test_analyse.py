"""Unit tests of the rolling-restart analysis on synthetic load-generator results.

    python3 -m unittest discover -s tools/rolling -t .

They pin what makes the check pass or fail (a burst of reconnects, a 1006, a loss, a
duplicate, an exit code, no recovery) without starting a cluster.
"""

import copy
import unittest

from . import analyse

T0 = 1_700_000_000
CONNS = 400
RATE = 400
D = 5  # drain seconds: spread window 3 s (with 1.8 s, all of a drain in one second is < 2x even)


def base():
    """60 s of load, three drains at t=5, 20, 35, each moving 130 connections over ~3 s."""
    timeline = [{"unix_s": T0 + s, "connected": CONNS, "reconnects": 0, "closes": 0,
                 "sent": RATE, "delivered": RATE} for s in range(60)]
    events = []
    for k, t in enumerate((5, 20, 35)):
        for s, n in ((t, 40), (t + 1, 45), (t + 2, 45)):  # 130 over 3 s: even spread 43/s
            timeline[s]["reconnects"] = n
            timeline[s]["closes"] = n
        timeline[t]["connected"] = CONNS - 30
        timeline[t + 1]["connected"] = CONNS - 20
        events.append({"node": f"node-{k + 1}", "signal": "TERM", "sigterm_unix": T0 + t + 0.2,
                       "exit_unix": T0 + t + 3.2, "exit_code": 0, "ready_unix": T0 + t + 3.7})
    result = {"connections": {"attempted": CONNS, "established": CONNS, "failed": 0},
              "messages": {"scheduled": 20000, "sent": 20000, "acked": 19990, "unconfirmed": 10,
                           "delivered": 19995, "lost": 0, "duplicated": 0, "out_of_order": 0},
              "closes": {"1012": 390}, "recovery_failed": 0, "reconnects": 390,
              "timeline": timeline}
    cfg = {"drain_seconds": D, "rate": RATE, "expected_connections": CONNS,
           "send_end_unix": T0 + 55, "min_even_spread": 5, "spread_factor": 2.0,
           "delivery_ratio": 0.9}
    return result, events, cfg


class Analyse(unittest.TestCase):
    def run_it(self, result, events, cfg):
        return analyse.analyse(result, events, cfg)

    def test_clean_run_passes(self):
        rep = self.run_it(*base())
        self.assertEqual(rep["failures"], [])
        self.assertTrue(all(d["compared"] and d["ok"] for d in rep["drains"]))
        self.assertAlmostEqual(rep["drains"][0]["even_spread_per_s"], 130 / 3.0, places=1)
        self.assertEqual(rep["nodes"][0]["drain_s"], 3.0)
        self.assertIsNotNone(rep["recovery"]["seconds"])
        self.assertLessEqual(rep["recovery"]["seconds"], 1.0)
        # dips in seconds 5 and 6, all back at the end of second 7: 8 - 5.2
        self.assertEqual(rep["nodes"][0]["all_connected_again_s"], 2.8)

    def test_all_connected_again_ignores_the_next_drain(self):
        result, events, cfg = base()
        tl = result["timeline"]
        tl[8]["connected"] = CONNS - 10  # the next drain starts right after all came back
        rep = self.run_it(result, events, cfg)
        self.assertEqual(rep["nodes"][0]["all_connected_again_s"], 2.8)

    def test_burst_fails(self):
        result, events, cfg = base()
        tl = result["timeline"]
        tl[20]["reconnects"], tl[21]["reconnects"], tl[22]["reconnects"] = 5, 100, 25
        rep = self.run_it(result, events, cfg)
        self.assertFalse(rep["ok"])
        self.assertIn("node-2 drain", rep["failures"][0])
        self.assertFalse(rep["drains"][1]["ok"])

    def test_herd_at_restart_counts_against_its_drain(self):
        # connections that wait for their node and all come back when it is ready again
        result, events, cfg = base()
        tl = result["timeline"]
        for s in (35, 36, 37):
            tl[s]["reconnects"] = 0
        tl[38]["reconnects"] = 130
        rep = self.run_it(result, events, cfg)
        self.assertFalse(rep["drains"][2]["ok"])

    def test_small_numbers_are_not_compared(self):
        result, events, cfg = base()
        tl = result["timeline"]
        for s in range(60):
            tl[s]["reconnects"] = 0
        tl[21]["reconnects"] = 14  # even spread 4.7/s < 5: noise, not a burst
        rep = self.run_it(result, events, cfg)
        self.assertFalse(rep["drains"][1]["compared"])
        self.assertEqual(rep["failures"], [])

    def test_late_tick_is_not_a_burst(self):
        # the sampler skipped a second: its bucket covers two seconds
        result, events, cfg = base()
        tl = result["timeline"]
        # the tick due at the end of second 6 ran 1.5 s late: its entry (labelled 6) holds
        # seconds 6 and 7, the next label is 8
        tl[6]["reconnects"] = 90  # 45 + 45 (> 2 x 43 if it were one second)
        del tl[7]
        rep = self.run_it(result, events, cfg)
        self.assertTrue(rep["drains"][0]["ok"], rep["drains"][0])

    def test_cumulative_series_are_differenced(self):
        result, events, cfg = base()
        tl = result["timeline"]
        run_r = run_d = 0
        for e in tl:
            run_r += e["reconnects"]
            run_d += e["delivered"]
            e["reconnects"], e["delivered"] = run_r, run_d
        result["messages"]["delivered"] = run_d
        rep = self.run_it(result, events, cfg)
        self.assertEqual(rep["failures"], [])
        self.assertEqual(rep["drains"][0]["reconnects"], 130)

    def test_each_guarantee_fails_the_check(self):
        cases = {
            "lost": lambda r, e: r["messages"].update(lost=1),
            "1006": lambda r, e: r["closes"].update({"1006": 3}),
            "duplicated": lambda r, e: r["messages"].update(duplicated=2),
            "out of order": lambda r, e: r["messages"].update(out_of_order=1),
            "recovered:false": lambda r, e: r.update(recovery_failed=1),
            "exited with 1": lambda r, e: e[1].update(exit_code=1),
            "setup": lambda r, e: r["connections"].update(failed=4),
        }
        for word, spoil in cases.items():
            result, events, cfg = base()
            spoil(result, events)
            rep = self.run_it(result, events, cfg)
            self.assertFalse(rep["ok"], word)
            self.assertTrue(any(word in f for f in rep["failures"]), (word, rep["failures"]))

    def test_reordered_publishes_are_a_warning_reordered_delivery_a_failure(self):
        result, events, cfg = base()
        result["messages"]["out_of_order"] = 2
        stored = {"streams": 400, "entries": 20000, "inversions": 2, "examples": []}
        rep = analyse.analyse(result, events, cfg, stored)
        self.assertEqual(rep["failures"], [])
        self.assertTrue(any("stored after newer ones" in w for w in rep["warnings"]))
        stored["inversions"] = 1
        rep = analyse.analyse(result, events, cfg, stored)
        self.assertTrue(any("broke offset order" in f for f in rep["failures"]), rep["failures"])

    def test_a_second_run_only_for_a_burst_during_a_machine_stall(self):
        result, events, cfg = base()
        tl = result["timeline"]
        tl[20]["reconnects"], tl[21]["reconnects"], tl[22]["reconnects"] = 5, 100, 25
        rows = [{"unix": T0 + s + 0.3, "load1": 1.0, "redis_ping_ms": 1.0,
                 "nodes": {"node-1": {"up": True, "scrape_ms": 2.0}}} for s in range(60)]
        rep = analyse.analyse(result, events, cfg)
        rep["node_samples"], rep["_timeline"] = rows, tl
        self.assertEqual(analyse.stall_retry_evidence(rep), [])  # no stall: the burst stands
        rows[20]["redis_ping_ms"] = 800.0
        self.assertIn("Redis PING 800.0 ms", analyse.stall_retry_evidence(rep)[0])
        result["closes"]["1006"] = 1  # any other failure: never a second run
        rep = analyse.analyse(result, events, cfg)
        rep["node_samples"], rep["_timeline"] = rows, tl
        self.assertEqual(analyse.stall_retry_evidence(rep), [])

    def test_kill_exit_code_is_not_a_drain_failure(self):
        result, events, cfg = base()
        for e in events:
            e.update(signal="KILL", exit_code=-9)
        rep = self.run_it(result, events, cfg)
        self.assertEqual(rep["failures"], [])

    def test_no_recovery_fails(self):
        result, events, cfg = base()
        for e in result["timeline"][35:]:
            e["connected"] = CONNS - 5
        rep = self.run_it(result, events, cfg)
        self.assertIsNone(rep["recovery"]["seconds"])
        self.assertTrue(any("no full recovery" in f for f in rep["failures"]))

    def test_recovery_waits_for_the_offered_rate(self):
        result, events, cfg = base()
        tl = result["timeline"]
        for s in range(38, 42):
            tl[s]["delivered"] = RATE // 2
        rep = self.run_it(result, events, cfg)
        # last ready at t=38.7; the rate is back in second 42 (ends at 43)
        self.assertAlmostEqual(rep["recovery"]["seconds"], 43 - 38.7, places=1)

    def test_input_untouched(self):
        result, events, cfg = base()
        before = copy.deepcopy((result, events, cfg))
        self.run_it(result, events, cfg)
        self.assertEqual(before, (result, events, cfg))


if __name__ == "__main__":
    unittest.main()
