"""Unit tests of the soak's accounting, flatness verdict and report (no cluster, < 1 s).

    python3 -m unittest discover -s tools/soak -t .

They pin what makes the soak pass or fail: a lost message, a gap answered by `resync` or
`recovered:false` (allowed only when Redis restarted empty), a silent gap, a duplicate, an
offset that carried another message, RSS or fds that grew, a restarted process.
"""

import json
import os
import sys
import unittest

sys.dont_write_bytecode = True
from .clients import Pool, User
from .ledger import Ledger, Stream
from .footprint import checkpoint, growth, table
from . import report
from .soak import series


class StreamTest(unittest.TestCase):
    def test_contiguous_offsets_are_ok(self):
        s = Stream()
        s.reset("e1", 0)
        self.assertEqual([s.message("e1", o)[0] for o in (1, 2, 3)], ["ok", "ok", "ok"])
        self.assertEqual(s.position, ("e1", 3))

    def test_a_skipped_offset_is_a_silent_gap(self):
        s = Stream()
        s.reset("e1", 5)
        self.assertEqual(s.message("e1", 8), ("gap", 2))
        self.assertEqual(s.position, ("e1", 8))

    def test_an_old_offset_is_a_repeat(self):
        s = Stream()
        s.reset("e1", 5)
        self.assertEqual(s.message("e1", 5), ("dup", 0))
        self.assertEqual(s.position, ("e1", 5))

    def test_an_unannounced_epoch_is_silent_but_an_empty_channel_gets_its_first(self):
        s = Stream()
        s.reset("e1", 4)
        self.assertEqual(s.message("e2", 1), ("epoch", 0))
        empty = Stream()
        empty.reset("e0", 0)
        self.assertEqual(empty.message("e7", 1), ("ok", 0))

    def test_a_resume_keeps_the_own_position_and_an_announced_one_replaces_it(self):
        s = Stream()
        s.reset("e1", 3)
        s.welcome("e1", 9)  # recovered:true: the replay of 4..9 follows
        self.assertEqual(s.position, ("e1", 3))
        s.reset("e2", 2)  # resync / recovered:false
        self.assertEqual(s.message("e2", 3), ("ok", 0))


def ledger(*acks):
    led = Ledger()
    for user, epoch, offset, seq, sent in acks:
        led.ack(user, epoch, offset, seq, sent, "api")
    return led


class LedgerTest(unittest.TestCase):
    def test_delivered_messages_are_not_lost_and_duplicates_are_counted_once(self):
        led = ledger(("a", "e1", 1, 10, 0.0), ("a", "e1", 2, 11, 0.1))
        self.assertTrue(led.deliver("a", "e1", 1, 10))
        self.assertTrue(led.deliver("a", "e1", 2, 11))
        self.assertFalse(led.deliver("a", "e1", 2, 11))
        out, lost = led.outcome()
        self.assertEqual((out["acked"], out["delivered"], out["lost"]), (2, 2, 0))
        self.assertEqual(led.counts["user_duplicates"], 1)
        self.assertEqual(lost, [])

    def test_an_undelivered_message_without_an_answer_is_lost(self):
        led = ledger(("a", "e1", 1, 10, 0.0), ("a", "e1", 2, 11, 0.1))
        led.deliver("a", "e1", 1, 10)
        out, lost = led.outcome()
        self.assertEqual(out["lost"], 1)
        self.assertEqual(lost, [("a", "e1", 2, 11, "api", None)])
        self.assertEqual(led.outstanding(), 1)

    def test_a_resync_to_a_new_epoch_answers_the_old_epochs_gap(self):
        led = ledger(("a", "e1", 1, 10, 0.0), ("a", "e1", 2, 11, 0.1))
        led.answer("a", "resync", "e2", 0, 5.0)
        out, _ = led.outcome()
        self.assertEqual((out["lost"], out["gap_answered"], out["gap_answered_resync"]), (0, 2, 2))

    def test_a_recovered_false_answers_its_own_epoch_up_to_its_offset_only(self):
        led = ledger(("a", "e2", 3, 10, 0.0), ("a", "e2", 4, 11, 6.0))
        led.answer("a", "recovered_false", "e2", 3, 5.0)
        out, lost = led.outcome()
        self.assertEqual((out["gap_answered_recovered_false"], out["lost"]), (1, 1))
        self.assertEqual(lost[0][2], 4)

    def test_an_answer_before_the_publish_does_not_cover_it(self):
        led = ledger(("a", "e1", 7, 10, 9.0))
        led.answer("a", "resync", "e0", 0, 5.0)
        self.assertEqual(led.outcome()[0]["lost"], 1)

    def test_another_users_answer_does_not_cover(self):
        led = ledger(("a", "e1", 1, 10, 0.0))
        led.answer("b", "resync", "e2", 0, 5.0)
        self.assertEqual(led.outcome()[0]["lost"], 1)

    def test_a_lost_message_whose_payload_came_at_another_offset_says_where(self):
        led = ledger(("a", "e1", 5, 10, 0.0))
        led.deliver("a", "e1", 6, 10)
        self.assertEqual(led.outcome()[1], [("a", "e1", 5, 10, "api", ("e1", 6))])

    def test_an_offset_delivered_with_another_message_is_mismatched(self):
        led = ledger(("a", "e1", 1, 10, 0.0))
        led.deliver("a", "e1", 1, 99)
        out, _ = led.outcome()
        self.assertEqual((out["delivered"], out["mismatched"]), (1, 1))

    def test_a_delivery_without_an_ack_is_counted_apart(self):
        led = ledger()
        led.deliver("a", "e1", 1, 10)
        self.assertEqual(led.outcome()[0]["delivered_unacked"], 1)


def cp(**procs):
    return {n: {"pid": pid, "rss_kb": rss, "fds": fds} for n, (pid, rss, fds) in procs.items()}


class GrowthTest(unittest.TestCase):
    def test_within_the_limit_is_flat_and_beyond_it_grew(self):
        a = cp(n1=(1, 10000, 40), n2=(2, 10000, 40))
        b = cp(n1=(1, 10500, 42), n2=(2, 10501, 40))
        rows = {r["name"]: r for r in growth(a, b, ["n1", "n2"], 0.05)}
        self.assertTrue(rows["n1"]["ok"])
        self.assertFalse(rows["n2"]["ok"])
        self.assertEqual(rows["n2"]["verdict"], "GREW")

    def test_fds_growth_alone_fails(self):
        rows = growth(cp(n=(1, 10000, 40)), cp(n=(1, 9000, 43)), ["n"], 0.05)
        self.assertFalse(rows[0]["ok"])

    def test_a_restarted_process_is_not_judged_and_a_missing_one_fails(self):
        rows = growth(cp(n=(1, 100, 4)), cp(n=(9, 900, 40)), ["n", "gone"], 0.05)
        self.assertEqual([(r["verdict"], r["ok"]) for r in rows], [("restarted", True), ("missing", False)])

    def test_a_checkpoint_is_the_median_of_its_samples(self):
        samples = [{"t": i, "phase": "", "procs": {"n": {"pid": 1, "rss_kb": r, "fds": f}}}
                   for i, (r, f) in enumerate([(100, 9), (300, 7), (200, 8)])]
        self.assertEqual(checkpoint(samples)["n"], {"pid": 1, "rss_kb": 200, "fds": 8})

    def test_the_table_has_a_row_per_mark_and_the_last_sample(self):
        samples = [{"t": float(t), "phase": "load", "procs": {"n": {"pid": 1, "rss_kb": 2048, "fds": 30}}}
                   for t in range(0, 95)]
        text = table(samples, ["n", "redis"], every=30)
        rows = text.splitlines()[2:]
        self.assertEqual([r.split("|")[1].strip() for r in rows], ["0", "30", "60", "90", "94"])
        self.assertIn("| 2.0 | 30 | — | — |", rows[0])


def outcome(**kw):
    base = {"acked": 100, "delivered": 100, "lost": 0, "gap_answered": 0, "mismatched": 0}
    base.update(kw)
    return base


FLAT = [{"name": "node-1", "verdict": "flat", "ok": True, "rss_before_kb": 1024, "rss_after_kb": 1024,
         "rss_growth": 0.0, "fds_before": 20, "fds_after": 20, "fds_growth": 0.0},
        {"name": "node-3", "verdict": "restarted", "ok": True}]


def failed(results):
    return [name for name, ok, _ in results if not ok]


class ChecksTest(unittest.TestCase):
    COUNTS = {"reconnects": 50}

    def test_a_clean_run_passes(self):
        self.assertEqual(failed(report.checks(outcome(), self.COUNTS, FLAT, "keep")), [])

    def test_a_lost_message_fails(self):
        self.assertEqual(failed(report.checks(outcome(lost=1, delivered=99), self.COUNTS, FLAT, "empty")),
                         ["0 acknowledged user-channel messages lost"])

    def test_gap_answers_pass_after_an_empty_restart_but_not_when_redis_kept_its_data(self):
        o = outcome(delivered=90, gap_answered=10)
        self.assertEqual(failed(report.checks(o, self.COUNTS, FLAT, "empty")), [])
        self.assertEqual(failed(report.checks(o, self.COUNTS, FLAT, "keep")),
                         ["Redis kept its data: no gap needed an answer"])

    def test_silent_gaps_duplicates_and_mismatches_fail(self):
        counts = dict(self.COUNTS, room_silent_gaps=1, user_duplicates=2)
        self.assertEqual(failed(report.checks(outcome(mismatched=1), counts, FLAT, "keep")), [
            "each delivered offset carried its acknowledged message",
            "no silent gap (user and room channels)", "no duplicate delivery"])

    def test_growth_fails_and_nothing_published_fails(self):
        grew = [dict(FLAT[0], ok=False, verdict="GREW", rss_growth=0.2)]
        self.assertEqual(failed(report.checks(outcome(), self.COUNTS, grew, "keep")), ["node-1 flat after warm-up"])
        self.assertIn("publishes acknowledged", failed(report.checks(outcome(acked=0), {}, FLAT, "keep")))

    def test_the_totals_name_every_count_once(self):
        counts = {"connects": 9, "reconnects": 8, "closes_client_1000": 7, "closes_server_1006": 2,
                  "connect_failed_ConnectionRefusedError": 3}
        rows = dict(report.totals(outcome(), counts))
        self.assertEqual(rows["connections / reconnects"], "9 / 8")
        self.assertEqual(rows["closes by code"], "client_1000 7, server_1006 2")
        self.assertEqual(rows["other counts"], "connect_failed_ConnectionRefusedError 3")


class RenderTest(unittest.TestCase):
    def test_the_report_shows_the_verdict_both_spans_and_the_failed_check(self):
        after = [dict(FLAT[0], rss_growth=0.01)]
        results = report.checks(outcome(lost=2), {"reconnects": 5}, FLAT, "keep")
        md = report.render({"revision": "abc"}, outcome(lost=2), {"reconnects": 5}, FLAT, [], ["node-1"],
                           [(1.0, "Redis SIGKILLed")], results, 30, after)
        self.assertTrue(md.startswith("## Soak: FAIL"))
        self.assertIn("| node-1 | A → B (judged) | flat |", md)
        self.assertIn("| node-1 | C → B (after the restarts) | — |", md)
        self.assertIn("| node-3 | A → B (judged) | restarted |", md)
        self.assertIn("- FAIL 0 acknowledged user-channel messages lost: 2 lost", md)


class SeriesTest(unittest.TestCase):
    def test_named_series_other_than_zero(self):
        text = ("# TYPE switchboard_disconnects_total counter\n"
                'switchboard_disconnects_total{code="1000"} 12\n'
                'switchboard_disconnects_total{code="1006"} 0\n'
                "switchboard_connections 3\n"
                "switchboard_backplane_reconnects_total 2\n")
        self.assertEqual(series(text, ("switchboard_disconnects_total", "switchboard_backplane_reconnects_total")),
                         {'switchboard_disconnects_total{code="1000"}': 12.0,
                          "switchboard_backplane_reconnects_total": 2.0})
        self.assertEqual(series(None, ("x",)), {})


class FakeSock:
    def close(self):
        pass


class FakeConn:
    """What the pool needs of a connection: frames to read, frames written, a close."""

    def __init__(self, frames):
        self.frames = [json.dumps(f) for f in frames]
        self.sent, self.pending, self.sock, self.closed_with = [], {}, FakeSock(), None

    def messages(self):
        out, self.frames = self.frames, []
        return out

    def send_json(self, msg):
        self.sent.append(msg)

    def _send(self, opcode, payload):
        self.sent.append((opcode, payload))


class PoolFramesTest(unittest.TestCase):
    """The pool's frame handling without sockets: both answers to lost history (today's
    goaway resync + 1012, the resync frame), resumes, publish replies."""

    def setUp(self):
        self.ledger = Ledger()
        self.user = User("a", "tok", ["room:r"])
        self.pool = Pool([self.user], self.ledger, lambda: ["127.0.0.1:1"])

    def tearDown(self):
        self.pool.connectors.shutdown()

    def feed(self, *frames, since=None):
        u = self.user
        if u.conn is None:
            u.conn, u.state, u.since = FakeConn([]), "open", since
        u.conn.frames += [json.dumps(f) for f in frames]
        self.pool._frames(u)
        return u.conn

    def test_a_first_welcome_sets_the_position_and_subscribes_the_rooms(self):
        conn = self.feed({"type": "welcome", "epoch": "e1", "offset": 0})
        self.assertEqual(self.user.stream.position, ("e1", 0))
        self.assertEqual([m["channel"] for m in conn.sent], ["room:r"])
        self.assertNotIn("since", conn.sent[0])

    def test_messages_are_delivered_and_a_published_reply_is_acknowledged(self):
        conn = self.feed({"type": "welcome", "epoch": "e1", "offset": 0})
        self.pool._publish(self.user, "publish_user", "user:a")
        rid = conn.sent[-1]["id"]
        seq = conn.sent[-1]["data"]["s"]
        self.feed({"type": "reply", "id": rid, "ok": True, "epoch": "e1", "offset": 1},
                  {"type": "message", "channel": "user:a", "epoch": "e1", "offset": 1, "data": {"s": seq}})
        out, _ = self.ledger.outcome()
        self.assertEqual((out["acked"], out["delivered"], out["lost"]), (1, 1, 0))

    def test_the_resync_frame_moves_to_the_new_epoch_and_answers_the_gap(self):
        self.feed({"type": "welcome", "epoch": "e1", "offset": 0})
        self.ledger.ack("a", "e1", 1, 7, -1.0, "api")
        self.feed({"type": "resync", "channel": "user:a", "epoch": "e2", "offset": 0},
                  {"type": "resync", "channel": "room:r", "epoch": "r2", "offset": 3},
                  {"type": "message", "channel": "user:a", "epoch": "e2", "offset": 1, "data": {"s": 8}})
        self.assertEqual(self.user.stream.position, ("e2", 1))
        self.assertEqual(self.user.room_streams["room:r"].position, ("r2", 3))
        self.assertEqual((self.ledger.counts["resync_user"], self.ledger.counts["resync_room"]), (1, 1))
        self.assertEqual(self.ledger.counts["user_silent_epoch_changes"], 0)
        self.assertEqual(self.ledger.outcome()[0]["gap_answered_resync"], 1)
        self.assertIsNotNone(self.user.conn)  # the connection stays

    def test_goaway_resync_then_1012_then_a_resume_answered_recovered_false(self):
        self.feed({"type": "welcome", "epoch": "e1", "offset": 0})
        self.ledger.ack("a", "e1", 1, 7, -1.0, "api")
        conn = self.feed({"type": "goaway", "reason": "resync", "reconnect_ms": 0})
        conn.closed_with = 1012
        self.pool._finish(self.user, 1012)
        self.assertEqual((self.ledger.counts["goaway_resync"], self.ledger.counts["closes_server_1012"]), (1, 1))
        self.assertEqual(self.user.state, "offline")
        self.feed({"type": "welcome", "epoch": "e2", "offset": 0, "recovered": False}, since=("e1", 0))
        self.assertEqual(self.ledger.counts["welcome_recovered_false"], 1)
        self.assertEqual(self.user.stream.position, ("e2", 0))
        self.assertEqual(self.ledger.outcome()[0]["gap_answered_recovered_false"], 1)

    def test_a_skipped_offset_is_counted_as_a_silent_gap(self):
        self.feed({"type": "welcome", "epoch": "e1", "offset": 0},
                  {"type": "message", "channel": "user:a", "epoch": "e1", "offset": 2, "data": {"s": 1}})
        self.assertEqual(self.ledger.counts["user_silent_gaps"], 1)


if __name__ == "__main__":
    unittest.main()
