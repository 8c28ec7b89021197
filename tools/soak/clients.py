"""The soak's load: a fixed pool of users whose connections open and close all the time,
and the publishers.

`Pool` runs one thread with a selector over every open socket (RFC 6455 framing from
tools/checks/wsclient.py) and a few connector threads for the blocking upgrades. Each user
has at most one connection at a time, to a random node: it lives a random lifetime, closes
with 1000 and, after a random pause, comes back with `?since=<epoch>:<offset>` of the last
message it has on its own channel, re-subscribing its rooms with `since` too — what a real
client does. A server close (1012 after `goaway`, 1006 when a node dies) is followed by a
reconnect after `goaway.reconnect_ms` or a short jittered pause. Every frame goes through
the `Ledger` (ledger.py); the pool itself only counts.

Traffic: the pool sends client `publish` frames from random connections to other users'
channels (acknowledged by their reply's epoch/offset) and to the senders' rooms;
`publisher.ApiPublisher` posts `/v1/publish`. Every payload is `{"s": <sequence number>}`.

Both behaviours after a Redis restart that lost history are handled: today's `goaway`
reason `resync` + close 1012 (the resume then answers `recovered:false`) and the `resync`
frame (`{"type":"resync","channel","epoch","offset"}`: the position moves to the new epoch).
"""

import itertools
import json
import queue
import random
import selectors
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ..checks.wsclient import Refused, WebSocket
from .ledger import Stream

SEQ = itertools.count(1)  # payload sequence numbers, shared by every publisher
CLOSE_TIMEOUT = 5.0  # a close handshake the server does not finish in this long is dropped


class Conn(WebSocket):
    """A WebSocket read by the pool's selector: one recv per readiness (the socket keeps its
    timeout for writes, so a second recv would block)."""

    def fill(self):
        try:
            chunk = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return True
        except OSError:
            return False
        if not chunk:
            return False
        self.buf += chunk
        return True


class User:
    def __init__(self, uid, token, rooms):
        self.uid, self.token, self.rooms = uid, token, rooms
        self.channel = f"user:{uid}"
        self.stream = Stream()  # its own channel, across connections
        self.room_streams = {r: Stream() for r in rooms}
        self.conn = None
        self.state = "offline"  # offline | connecting | open | closing
        self.due = 0.0  # when the next transition (connect or close) is due
        self.node = None  # index of the node of the current connection
        self.since = None  # the position the current connection resumed from
        self.welcomed = False
        self.closing_since = 0.0
        self.reconnect_ms = None  # from a goaway
        self.connects = 0
        self.subscribed = set()
        self.resubscribe_at = None


class Pool:
    def __init__(self, users, ledger, targets, lifetime=(3.0, 20.0), pause=(0.2, 3.0),
                 ws_user_rate=10.0, ws_room_rate=10.0, connectors=6):
        """targets() -> [public address] of every node (dead ones included: a client does
        not know). Rates are messages per second over the whole pool."""
        self.users, self.ledger, self.targets = users, ledger, targets
        self.lifetime, self.pause = lifetime, pause
        self.ws_user_rate, self.ws_room_rate = ws_user_rate, ws_room_rate
        self.sel = selectors.DefaultSelector()
        self.done = queue.Queue()
        self.connectors = ThreadPoolExecutor(max_workers=connectors, thread_name_prefix="connect")
        self.held = False  # every connection closes and none opens (a checkpoint)
        self.churn = True  # connections close when their lifetime is over
        self.publishing = False  # client publish frames on
        self.req = itertools.count(1)
        self.unanswered = 0  # client publishes waiting for their reply (the loop updates it)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pool", daemon=True)

    # -- control (any thread) ------------------------------------------------------------

    def start(self):
        now = time.monotonic()
        for u in self.users:
            u.due = now + random.uniform(0, 3)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(15)
        self.connectors.shutdown(wait=True)

    def hold(self):
        self.held = True

    def resume(self, spread=3.0):
        now = time.monotonic()
        for u in self.users:
            u.due = now + random.uniform(0, spread)
        self.held = False

    def settle(self):
        """No more churn: open connections stay, offline users come back now."""
        self.churn = False
        self.publishing = False
        now = time.monotonic()
        for u in self.users:
            u.due = now

    def active(self):
        """Users with a connection opening, open or closing."""
        return sum(1 for u in self.users if u.state != "offline")

    def per_node(self):
        out = {}
        for u in self.users:
            if u.state == "open":
                out[u.node] = out.get(u.node, 0) + 1
        return out

    def count(self, name, n=1):
        self.ledger.count(name, n)

    # -- the loop ------------------------------------------------------------------------

    def _run(self):
        next_user_pub = next_room_pub = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            self._connected()
            for u in self.users:
                self._tick(u, now)
            if self.publishing and not self.held:
                next_user_pub = self._publish_due(now, next_user_pub, self.ws_user_rate, self._publish_user)
                next_room_pub = self._publish_due(now, next_room_pub, self.ws_room_rate, self._publish_room)
            else:
                next_user_pub = next_room_pub = now
            for key, _ in self.sel.select(timeout=0.05):
                self._readable(key.data)
            self.unanswered = sum(1 for u in self.users if u.conn for p in u.conn.pending.values()
                                  if p[0] != "subscribe")
        for u in self.users:
            if u.conn:
                self._finish(u, None)

    @staticmethod
    def _publish_due(now, due, rate, send):
        if rate <= 0:
            return now
        while due <= now:
            send()
            due += 1.0 / rate
        return due

    def _tick(self, u, now):
        if u.state == "offline" and not self.held and now >= u.due:
            self._connect(u)
        elif u.state == "open":
            if self.held or (self.churn and now >= u.due):
                self._close(u)
            elif u.resubscribe_at and now >= u.resubscribe_at:
                u.resubscribe_at = None
                self._subscribe(u, [r for r in u.rooms if r not in u.subscribed])
        elif u.state == "closing" and now - u.closing_since > CLOSE_TIMEOUT:
            self.count("close_timeouts")
            self._finish(u, None)

    # -- connecting ------------------------------------------------------------------------

    def _connect(self, u):
        targets = self.targets()
        u.node = random.randrange(len(targets))
        pos = u.stream.position
        u.since = pos if pos and pos[0] else None
        u.state, u.welcomed = "connecting", False
        self.connectors.submit(self._open, u, targets[u.node], u.since)

    def _open(self, u, addr, since):
        query = {"since": f"{since[0]}:{since[1]}"} if since else None
        try:
            self.done.put((u, Conn.connect(addr, token=u.token, query=query, timeout=5.0), None))
        except Refused as e:
            self.done.put((u, None, f"http_{e.status}"))
        except OSError as e:
            self.done.put((u, None, type(e).__name__))

    def _connected(self):
        while True:
            try:
                u, conn, why = self.done.get_nowait()
            except queue.Empty:
                return
            if conn is None:
                self.count(f"connect_failed_{why}")
                u.state, u.due = "offline", time.monotonic() + random.uniform(0.2, 1.0)
                continue
            self.count("connects")
            if u.connects:
                self.count("reconnects")
            u.connects += 1
            u.conn, u.state = conn, "open"
            u.conn.pending = {}  # request id -> what it was
            u.subscribed, u.resubscribe_at, u.reconnect_ms = set(), None, None
            u.due = time.monotonic() + random.uniform(*self.lifetime)
            self.sel.register(conn.sock, selectors.EVENT_READ, u)
            self._frames(u)  # the welcome may have come with the upgrade

    # -- reading ---------------------------------------------------------------------------

    def _readable(self, u):
        alive = u.conn.fill()
        self._frames(u)
        if u.conn and (not alive or u.conn.closed_with is not None):
            self._finish(u, u.conn.closed_with)

    def _frames(self, u):
        for text in u.conn.messages():
            if u.conn is None:
                return  # a handler's write failed and finished the connection
            try:
                f = json.loads(text)
            except ValueError:
                self.count("frames_not_json")
                continue
            handler = getattr(self, f"_on_{f.get('type')}", None)
            if handler:
                handler(u, f)
            else:
                self.count(f"frames_{f.get('type')}")

    def _on_welcome(self, u, f):
        u.welcomed = True
        epoch, offset = f.get("epoch"), f.get("offset", 0)
        if u.since is None:
            u.stream.welcome(epoch, offset)
        elif f.get("recovered") is True:
            self.count("welcome_recovered_true")
        elif f.get("recovered") is False:
            self.count("welcome_recovered_false")
            self.ledger.answer(u.uid, "recovered_false", epoch, offset, time.monotonic())
            u.stream.reset(epoch, offset)
        else:
            self.count("welcome_without_recovered")  # a resume must say whether it recovered
        self._subscribe(u, u.rooms)

    def _subscribe(self, u, rooms):
        for room in rooms:
            if u.conn is None:
                return
            rid = next(self.req)
            pos = u.room_streams[room].position
            msg = {"type": "subscribe", "id": rid, "channel": room}
            if pos and pos[0]:
                msg["since"] = {"epoch": pos[0], "offset": pos[1]}
            u.conn.pending[rid] = ("subscribe", room, bool(msg.get("since")), None, None)
            self._send(u, msg)

    def _on_message(self, u, f):
        channel, epoch, offset = f.get("channel"), f.get("epoch"), f.get("offset")
        data = f.get("data")
        seq = data.get("s") if isinstance(data, dict) else None
        if channel == u.channel:
            kind, missing = u.stream.message(epoch, offset)
            self.ledger.deliver(u.uid, epoch, offset, seq)
            prefix = "user"
        elif channel in u.room_streams:
            kind, missing = u.room_streams[channel].message(epoch, offset)
            self.count("room_delivered")
            prefix = "room"
        else:
            self.count("messages_unexpected_channel")
            return
        if kind == "dup":
            self.count(f"{prefix}_stream_repeats")
        elif kind == "gap":
            self.count(f"{prefix}_silent_gaps")
            self.count(f"{prefix}_silent_gap_offsets", missing)
        elif kind == "epoch":
            self.count(f"{prefix}_silent_epoch_changes")

    def _on_reply(self, u, f):
        what = u.conn.pending.pop(f.get("id"), None)
        if what is None:
            self.count("replies_unexpected")
            return
        kind, channel, since, seq, sent = what
        if not f.get("ok"):
            code = (f.get("error") or {}).get("code")
            self.count(f"{kind}_error_{code}")
            if kind == "subscribe":
                u.resubscribe_at = time.monotonic() + 1.0
            return
        if kind == "subscribe":
            u.subscribed.add(channel)
            stream = u.room_streams[channel]
            if not since:
                stream.welcome(f.get("epoch"), f.get("offset", 0))
            elif f.get("recovered") is True:
                self.count("room_recovered_true")
            elif f.get("recovered") is False:
                self.count("room_recovered_false")
                stream.reset(f.get("epoch"), f.get("offset", 0))
            else:
                self.count("room_reply_without_recovered")
        elif kind == "publish_user":
            self.ledger.ack(channel[len("user:"):], f.get("epoch"), f.get("offset"), seq, sent, "ws")
        elif kind == "publish_room":
            self.count("room_acked")

    def _on_resync(self, u, f):
        channel, epoch, offset = f.get("channel"), f.get("epoch"), f.get("offset", 0)
        if channel == u.channel:
            self.count("resync_user")
            self.ledger.answer(u.uid, "resync", epoch, offset, time.monotonic())
            u.stream.reset(epoch, offset)
        elif channel in u.room_streams:
            self.count("resync_room")
            u.room_streams[channel].reset(epoch, offset)
        else:
            self.count("resync_unexpected_channel")

    def _on_goaway(self, u, f):
        self.count(f"goaway_{f.get('reason')}")
        u.reconnect_ms = f.get("reconnect_ms")

    def _on_presence(self, u, f):
        self.count("presence")

    def _on_pong(self, u, f):
        pass

    def _on_error(self, u, f):
        self.count(f"error_frames_{f.get('code')}")

    # -- writing and closing ---------------------------------------------------------------

    def _send(self, u, msg):
        try:
            u.conn.send_json(msg)
            return True
        except OSError:
            self._finish(u, None)
            return False

    def _sender(self):
        ready = [u for u in self.users if u.state == "open" and u.welcomed]
        if not ready:
            self.count("publish_ws_skipped")
            return None
        return random.choice(ready)

    def _publish_user(self):
        u = self._sender()
        if u is None:
            return
        target = random.choice(self.users)
        while target is u and len(self.users) > 1:
            target = random.choice(self.users)
        self._publish(u, "publish_user", target.channel)

    def _publish_room(self):
        u = self._sender()
        if u is None or not u.subscribed:
            return
        self._publish(u, "publish_room", random.choice(sorted(u.subscribed)))

    def _publish(self, u, kind, channel):
        rid, seq = next(self.req), next(SEQ)
        u.conn.pending[rid] = (kind, channel, False, seq, time.monotonic())
        self.count(f"{kind}_sent")
        self._send(u, {"type": "publish", "id": rid, "channel": channel, "data": {"s": seq}})

    def _close(self, u):
        u.state, u.closing_since = "closing", time.monotonic()
        try:
            u.conn._send(0x8, struct.pack("!H", 1000))
        except OSError:
            self._finish(u, None)

    def _finish(self, u, code):
        """The connection is over: `code` is the server's close code (None: no close frame)."""
        conn = u.conn
        if u.state == "closing":
            how = f"client_{code or 'unanswered'}"
        else:
            how = f"server_{code or 1006}"
        self.count(f"closes_{how}")
        if u.state != "closing" and code is not None:
            try:  # echo the server's close
                conn._send(0x8, struct.pack("!H", code))
            except OSError:
                pass
        unanswered = sum(1 for p in conn.pending.values() if p[0] != "subscribe")
        if unanswered:  # by how the connection ended
            self.count(f"publish_ws_unanswered_{how}", unanswered)
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        u.conn, u.welcomed = None, False
        now = time.monotonic()
        if u.state == "closing":
            u.due = now + random.uniform(*self.pause)
        elif u.reconnect_ms is not None:
            u.due = now + min(u.reconnect_ms, 5000) / 1000 + random.uniform(0, 0.2)
        else:
            u.due = now + random.uniform(0.1, 1.0)
        u.state = "offline"
