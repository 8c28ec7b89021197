"""The soak's server-side traffic: `POST /v1/publish` to random users' channels, acknowledged
by the answer's epoch/offset into the `Ledger`."""

import http.client
import json
import random
import threading
import time

from .clients import SEQ


class ApiPublisher:
    """`POST /v1/publish` to random users' channels at `rate` per second through a random
    node's server API (keep-alive connections; a dead node answers with a connect error)."""

    def __init__(self, users, ledger, apis, api_key, rate):
        self.users, self.ledger, self.apis, self.rate = users, ledger, apis, rate
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self.conns = {}
        self.on = threading.Event()
        self.idle = threading.Event()  # set while no request is in flight
        self.idle.set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="api-publisher", daemon=True)

    def start(self):
        self.on.set()
        self._thread.start()
        return self

    def pause(self, timeout=10.0):
        """Stops publishing and waits for the request in flight, so that every answer that
        will ever be acknowledged is in the ledger when this returns."""
        self.on.clear()
        time.sleep(0.01)
        return self.idle.wait(timeout)

    def stop(self):
        self._stop.set()
        self.on.set()
        self._thread.join(15)
        for c in self.conns.values():
            c.close()

    def _run(self):
        due = time.monotonic()
        while not self._stop.is_set():
            if not self.on.wait(0.5) or self._stop.is_set():
                due = time.monotonic()
                continue
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            due = max(due + 1.0 / self.rate, time.monotonic() - 1.0)  # at most 1 s of catch-up
            self.idle.clear()
            try:
                if self.on.is_set() and not self._stop.is_set():
                    self._publish_one()
            finally:
                self.idle.set()

    def _publish_one(self):
        user = random.choice(self.users)
        addr = random.choice(self.apis())
        seq = next(SEQ)
        body = json.dumps({"channel": user.channel, "data": {"s": seq}})
        sent = time.monotonic()
        self.ledger.count("publish_api_sent")
        try:
            conn = self.conns.get(addr)
            if conn is None:
                conn = self.conns[addr] = http.client.HTTPConnection(addr, timeout=5)
            conn.request("POST", "/v1/publish", body=body, headers=self.headers)
            resp = conn.getresponse()
            payload = resp.read()
        except (OSError, http.client.HTTPException) as e:
            self.ledger.count(f"publish_api_error_{type(e).__name__}")
            conn = self.conns.pop(addr, None)
            if conn is not None:
                conn.close()
            return
        if resp.status != 200:
            self.ledger.count(f"publish_api_status_{resp.status}")
            return
        r = json.loads(payload)
        self.ledger.ack(user.uid, r["epoch"], r["offset"], seq, sent, "api")
