"""A minimal Redis client over RESP (stdlib only), shared by the rolling restart (its slowlog
sampler, the stored-order check of the streams) and the benchmark runner (INFO commandstats).

    Redis(port)                  one connection, bytes in and out; an error reply raises RedisError
    command(port, *args)         one command on a fresh connection; text replies as str, an error
                                 reply as its text (for probes that only log it)
"""

import socket


class RedisError(RuntimeError):
    """An error reply (`-ERR …`)."""


def read_reply(f, raise_errors=True):
    """One RESP reply from a binary file object: bytes (simple or bulk string), int, list or
    None (nil). An error reply raises RedisError, or with raise_errors=False is returned as
    its bytes."""
    line = f.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"+":
        return rest
    if kind == b"-":
        if raise_errors:
            raise RedisError(rest.decode("utf-8", "replace"))
        return rest
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [read_reply(f, raise_errors) for _ in range(n)]
    raise ValueError(f"bad RESP line {line!r}")


def encode(args):
    """A command as a RESP array of bulk strings (str, int and bytes arguments)."""
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def decode(reply):
    """bytes → str (UTF-8, invalid bytes replaced), recursively through lists."""
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace")
    if isinstance(reply, list):
        return [decode(r) for r in reply]
    return reply


class Redis:
    """One connection (bytes in, bytes out). Context manager."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.f = self.sock.makefile("rb")

    def close(self):
        self.f.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def cmd(self, *args):
        self.sock.sendall(encode(args))
        return read_reply(self.f)


def command(port, *args, host="127.0.0.1", timeout=2.0):
    """Sends one command to redis-server and returns its reply decoded (str, int, list, None);
    an error reply comes back as its text. Raises OSError when Redis cannot be reached."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(encode(args))
        with s.makefile("rb") as f:
            return decode(read_reply(f, raise_errors=False))
