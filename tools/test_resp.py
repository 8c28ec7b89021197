"""Unit tests of the shared RESP client (tools/resp.py): reply parsing on canned bytes, and a
round trip through a real redis-server when one is installed.

    python3 -m unittest tools.test_resp
"""

import io
import shutil
import tempfile
import unittest

from . import proc, resp


def parse(raw, **kw):
    return resp.read_reply(io.BytesIO(raw), **kw)


class Parse(unittest.TestCase):
    def test_kinds(self):
        self.assertEqual(parse(b"+OK\r\n"), b"OK")
        self.assertEqual(parse(b":42\r\n"), 42)
        self.assertEqual(parse(b"$5\r\nhe\r\no\r\n"), b"he\r\no")
        self.assertIsNone(parse(b"$-1\r\n"))
        self.assertIsNone(parse(b"*-1\r\n"))
        self.assertEqual(parse(b"*3\r\n$1\r\na\r\n:1\r\n*1\r\n+x\r\n"), [b"a", 1, [b"x"]])

    def test_errors(self):
        with self.assertRaisesRegex(resp.RedisError, "ERR unknown"):
            parse(b"-ERR unknown command\r\n")
        self.assertEqual(parse(b"-ERR no\r\n", raise_errors=False), b"ERR no")
        with self.assertRaises(ValueError):
            parse(b"?what\r\n")

    def test_encode_and_decode(self):
        self.assertEqual(resp.encode(["SET", b"k", 7]), b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n7\r\n")
        self.assertEqual(resp.decode([b"a", [b"\xff"], 3, None]), ["a", ["\ufffd"], 3, None])


@unittest.skipUnless(shutil.which("redis-server"), "redis-server not installed")
class RealRedis(unittest.TestCase):
    def test_round_trip(self):
        d = tempfile.mkdtemp(prefix="tools-test-resp-")
        p, port = proc.start_redis(d, log=False)
        try:
            self.assertEqual(resp.command(port, "PING"), "PONG")
            self.assertEqual(resp.command(port, "SET", "k", "v"), "OK")
            self.assertIn("cmdstat_set", resp.command(port, "INFO", "commandstats"))
            self.assertTrue(resp.command(port, "NOSUCHCOMMAND").startswith("ERR"))
            with resp.Redis(port) as r:
                self.assertEqual(r.cmd("XADD", "s", "1-0", "m", b"x"), b"1-0")
                self.assertEqual(r.cmd("XRANGE", "s", "-", "+"), [[b"1-0", [b"m", b"x"]]])
                with self.assertRaises(resp.RedisError):
                    r.cmd("NOSUCHCOMMAND")
        finally:
            proc.kill(p)
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
