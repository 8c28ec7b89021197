"""A minimal WebSocket client and HS256 JWT signer over the standard library (RFC 6455).

Enough for the observability scrape test (tools/checks/scrape_test.py): the upgrade with
custom headers (a refused upgrade returns its HTTP status and body), masked text frames,
server frames (text, close, ping answered with pong), a close handshake with a code, and
`pump` to read many sockets at once. Not a general client: no extensions, no TLS.
"""

import base64
import hashlib
import hmac
import json
import os
import selectors
import socket
import struct
import time
import urllib.parse

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_hs256(secret, claims):
    """A signed HS256 JWT for the claims."""
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"


class Refused(Exception):
    """The server answered the upgrade with something other than 101."""

    def __init__(self, status, body):
        super().__init__(f"upgrade refused: {status} {body!r}")
        self.status, self.body = status, body


class WebSocket:
    def __init__(self, sock, buffered=b""):
        self.sock = sock
        self.buf = bytearray(buffered)
        self.closed_with = None  # the close code the server sent, once it did

    @classmethod
    def connect(cls, addr, token=None, query=None, headers=None, timeout=10.0):
        """Opens ws://addr/ws; raises Refused with the HTTP status when not upgraded."""
        host, port = addr.rsplit(":", 1)
        params = dict(query or {})
        if token:
            params["token"] = token
        path = "/ws" + ("?" + urllib.parse.urlencode(params) if params else "")
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {addr}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        sock = socket.create_connection((host, int(port)), timeout=timeout)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                sock.close()
                raise Refused(0, data.decode("latin-1"))
            data += chunk
        head, rest = data.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        got = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
        if status != 101:
            length = int(got.get("content-length", "0"))
            while len(rest) < length:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                rest += chunk
            sock.close()
            raise Refused(status, rest.decode("utf-8", "replace"))
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        if got.get("sec-websocket-accept") != accept:
            sock.close()
            raise Refused(status, "bad Sec-WebSocket-Accept")
        return cls(sock, rest)

    # -- writing ---------------------------------------------------------------------------

    def _send(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def send_text(self, text):
        self._send(0x1, text.encode())

    def send_json(self, obj):
        self.send_text(json.dumps(obj))

    # -- reading ---------------------------------------------------------------------------

    def _frame(self):
        """One complete frame from the buffer as (opcode, payload), or None."""
        b = self.buf
        if len(b) < 2:
            return None
        opcode, n, pos = b[0] & 0x0F, b[1] & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, pos = struct.unpack("!H", b[2:4])[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, pos = struct.unpack("!Q", b[2:10])[0], 10
        if len(b) < pos + n:
            return None
        payload = bytes(b[pos:pos + n])
        del b[:pos + n]
        return opcode, payload

    def _handle(self, opcode, payload):
        """A text message (str), or None for control frames (answered here)."""
        if opcode == 0x9:
            self._send(0xA, payload)
        elif opcode == 0x8:
            self.closed_with = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        elif opcode in (0x1, 0x2):
            return payload.decode("utf-8", "replace")
        return None

    def messages(self):
        """Every complete text message now in the buffer."""
        out = []
        while (f := self._frame()) is not None:
            text = self._handle(*f)
            if text is not None:
                out.append(text)
        return out

    def fill(self):
        """Reads what the socket has (non-blocking); False once the peer closed it."""
        self.sock.setblocking(False)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return False
                self.buf += chunk
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        finally:
            self.sock.setblocking(True)

    def recv_json(self, timeout=10.0, want=None):
        """The next JSON message (of type `want`, skipping others); raises TimeoutError."""
        deadline = time.monotonic() + timeout
        pending = []
        while True:
            pending += self.messages()
            while pending:
                msg = json.loads(pending.pop(0))
                if want is None or msg.get("type") == want:
                    return msg
            left = deadline - time.monotonic()
            if left <= 0 or self.closed_with is not None:
                raise TimeoutError(f"no {want or 'message'} (closed with {self.closed_with})")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise TimeoutError(f"connection closed before a {want or 'message'}")
            self.buf += chunk

    def close(self, code=1000, timeout=5.0):
        """Sends a close frame and waits for the server's; returns the code it answered."""
        try:
            self._send(0x8, struct.pack("!H", code))
            deadline = time.monotonic() + timeout
            while self.closed_with is None and time.monotonic() < deadline:
                self.messages()
                if self.closed_with is not None:
                    break
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    break
                self.buf += chunk
            self.messages()
        except OSError:
            pass
        finally:
            self.sock.close()
        return self.closed_with


def pump(sockets, idle=1.0, limit=30.0):
    """Reads every socket until none has received anything for `idle` seconds; returns
    the number of text messages read."""
    sel = selectors.DefaultSelector()
    for ws in sockets:
        sel.register(ws.sock, selectors.EVENT_READ, ws)
    count, deadline = 0, time.monotonic() + limit
    try:
        while time.monotonic() < deadline:
            ready = sel.select(timeout=idle)
            if not ready:
                break
            for key, _ in ready:
                ws = key.data
                if not ws.fill():
                    sel.unregister(ws.sock)
                count += len(ws.messages())
    finally:
        sel.close()
    return count
