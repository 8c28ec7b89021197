"""The soak's accounting: what was acknowledged, what was delivered, which gaps were answered.

No sockets and no clock here (times are passed in), so `test_soak.py` drives it directly.

- `Stream` follows one client's position on one channel across its connections: every
  message must be the next offset of the position's epoch. A gap or an epoch change that no
  `resync` frame / `recovered:false` announced is *silent* — the one thing the protocol
  forbids ("never a silent gap").
- `Ledger` holds every acknowledged publish to a user channel (a 200 from `/v1/publish`, or
  an `ok` reply to a client `publish` frame) by `(user, epoch, offset)`, every delivery to
  that user, and every gap answer the user got (a `resync` frame for its `user:` channel, a
  `welcome` with `recovered:false`). At the end, an acknowledged message is

    delivered       the user received it (duplicates are counted, not double-counted);
    gap-answered    not received, but an answer after it was sent told the client its
                    history restarted: the answer's epoch differs from the message's, or
                    the message is at or before the answer's offset in that epoch;
    lost            neither — the pass criterion is 0.
"""

import threading
from collections import Counter


class Stream:
    """One client's position on one channel: (epoch, offset) of the last message it has."""

    def __init__(self):
        self.epoch = None
        self.offset = None

    @property
    def position(self):
        return None if self.epoch is None else (self.epoch, self.offset)

    def reset(self, epoch, offset):
        """A position the server announced (welcome, subscribe reply, resync)."""
        self.epoch, self.offset = epoch, offset

    def welcome(self, epoch, offset):
        """A position the server reported that does not move a known one backwards (a
        `recovered:true` answer: replay follows from our own position)."""
        if self.epoch is None:
            self.reset(epoch, offset)

    def message(self, epoch, offset):
        """Classifies one delivered message and advances: ("ok" | "dup" | "gap" |
        "epoch", missing) where missing is the number of offsets skipped by a gap."""
        if self.epoch is None:
            self.reset(epoch, offset)
            return "ok", 0
        if epoch != self.epoch:
            # An empty channel (offset 0) gets its epoch with its first message.
            kind = "ok" if self.offset == 0 and offset == 1 else "epoch"
            self.reset(epoch, offset)
            return kind, 0
        if offset <= self.offset:
            return "dup", 0
        missing = offset - self.offset - 1
        self.offset = offset
        return ("gap", missing) if missing else ("ok", 0)


class Published:
    __slots__ = ("seq", "sent", "via")

    def __init__(self, seq, sent, via):
        self.seq, self.sent, self.via = seq, sent, via


class Ledger:
    """Thread-safe: the publisher threads and the client loop write, the runner reads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acked = {}  # user -> {(epoch, offset): Published}
        self.delivered = {}  # user -> {(epoch, offset): seq}
        self.answers = {}  # user -> [(time, kind, epoch, offset)]
        self.counts = Counter()  # every other total, by name

    def count(self, name, n=1):
        with self.lock:
            self.counts[name] += n

    def ack(self, user, epoch, offset, seq, sent, via):
        """An acknowledged publish to `user:<user>` sent at `sent`, stored at (epoch, offset)."""
        with self.lock:
            slot = self.acked.setdefault(user, {})
            key = (epoch, offset)
            if key in slot:
                self.counts["user_ack_same_offset"] += 1  # two publishes answered one offset
            slot[key] = Published(seq, sent, via)
            self.counts[f"user_acked_{via}"] += 1

    def deliver(self, user, epoch, offset, seq):
        """A user-channel message received by the user; returns False for a duplicate."""
        with self.lock:
            got = self.delivered.setdefault(user, {})
            key = (epoch, offset)
            if key in got:
                self.counts["user_duplicates"] += 1
                return False
            got[key] = seq
            self.counts["user_delivered"] += 1
            return True

    def answer(self, user, kind, epoch, offset, at):
        """A gap answer for the user's own channel: kind is "resync" or "recovered_false"."""
        with self.lock:
            self.answers.setdefault(user, []).append((at, kind, epoch, offset))

    # -- the verdict -----------------------------------------------------------------------

    @staticmethod
    def covered(pub, epoch, offset, answers):
        """The kind of the first answer that covers an undelivered message, or None."""
        for at, kind, a_epoch, a_offset in answers:
            if at < pub.sent:
                continue  # an answer older than the publish says nothing about it
            if epoch != a_epoch or offset <= a_offset:
                return kind
        return None

    def outcome(self):
        """Every acknowledged user-channel message classified; see the module doc."""
        with self.lock:
            out = Counter({k: 0 for k in ("acked", "delivered", "lost", "gap_answered", "mismatched")})
            lost = []
            for user, slot in self.acked.items():
                got = self.delivered.get(user, {})
                seqs = {seq: key for key, seq in got.items()}
                answers = self.answers.get(user, [])
                for (epoch, offset), pub in slot.items():
                    out["acked"] += 1
                    if (epoch, offset) in got:
                        out["delivered"] += 1
                        if got[(epoch, offset)] != pub.seq:
                            out["mismatched"] += 1  # that offset carried another message
                        continue
                    kind = self.covered(pub, epoch, offset, answers)
                    if kind:
                        out[f"gap_answered_{kind}"] += 1
                        out["gap_answered"] += 1
                    else:
                        out["lost"] += 1
                        # Where the same payload arrived instead, if it did (a wrong ack).
                        elsewhere = seqs.get(pub.seq)
                        lost.append((user, epoch, offset, pub.seq, pub.via, elsewhere))
            acked_keys = {u: set(s) for u, s in self.acked.items()}
            out["delivered_unacked"] = sum(
                1 for u, got in self.delivered.items() for k in got if k not in acked_keys.get(u, ()))
            return out, sorted(lost)

    def outstanding(self):
        """Acknowledged messages neither delivered nor gap-answered yet (the settle loop)."""
        out, _ = self.outcome()
        return out["lost"]
