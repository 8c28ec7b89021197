#!/usr/bin/env python3
"""A tiny RPC upstream for Switchboard (Python standard library only).

    python3 deploy/examples/rpc_upstream.py [--port 7001] [--slow-seconds 5]

The gateway forwards a client's {"type":"rpc","method":…,"data":…} frame as
`POST /rpc` with the JSON body {"method": …, "data": …} (or "data_b64" for binary
payloads of protobuf clients) and the headers X-Switchboard-User, X-Switchboard-Conn,
X-Switchboard-Node and traceparent. Whatever 2xx JSON this answers becomes the reply's
`data`; anything else becomes an error reply.

Methods:
    orders.create  -> 200 {"order": "o-<n>"}
    orders.get     -> 200 {"order": <data.order>, "status": "paid"}
    orders.slow    -> sleeps --slow-seconds, then 200 {"slept": <seconds>}
    orders.fail    -> 500 {"error": "boom"}
    anything else  -> 404 {"error": "unknown method"}

Every request is logged with the identity headers (never the body).
"""
import argparse
import itertools
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ORDER_NUMBERS = itertools.count(1)
ORDER_LOCK = threading.Lock()


def next_order():
    with ORDER_LOCK:
        return f"o-{next(ORDER_NUMBERS)}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the gateway pools its connections
    slow_seconds = 5.0

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"null")
            method = body["method"]
            data = body.get("data")
        except (ValueError, KeyError, TypeError):
            return self.answer(400, {"error": "expected {\"method\", \"data\"}"})

        status, value = self.call(method, data)
        # One line per call with the identity the gateway vouches for (never the body).
        self.log_message(
            "%s -> %d user=%s conn=%s node=%s traceparent=%s",
            method,
            status,
            self.headers.get("X-Switchboard-User"),
            self.headers.get("X-Switchboard-Conn"),
            self.headers.get("X-Switchboard-Node"),
            self.headers.get("traceparent"),
        )
        self.answer(status, value)

    def call(self, method, data):
        if method == "orders.create":
            return 200, {"order": next_order()}
        if method == "orders.get":
            order = data.get("order") if isinstance(data, dict) else None
            return 200, {"order": order, "status": "paid"}
        if method == "orders.slow":
            time.sleep(self.slow_seconds)
            return 200, {"slept": self.slow_seconds}
        if method == "orders.fail":
            return 500, {"error": "boom"}
        return 404, {"error": "unknown method"}

    def answer(self, status, value):
        payload = json.dumps(value, separators=(",", ":")).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # The gateway gave up on this call (timeout, or the client's socket closed).
            self.log_message("caller went away before the answer")

    def log_request(self, code="-", size="-"):
        pass  # do_POST logs its own line

    def log_message(self, fmt, *args):
        sys.stderr.write("rpc_upstream: " + (fmt % args) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7001)
    ap.add_argument("--slow-seconds", type=float, default=5.0)
    args = ap.parse_args()
    Handler.slow_seconds = args.slow_seconds
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    print(f"rpc_upstream: listening on http://{host}:{port}/rpc", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
