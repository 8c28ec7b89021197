"""Unit tests of the shared /proc readers (tools/procstat.py) that the soak and the benchmark
runner both use: RSS in kB and bytes, open fds, and what a gone process reads as.

    python3 -m unittest tools.test_procstat
"""

import os
import unittest

from . import procstat

GONE = 2 ** 22 + 12345  # above the default pid_max: no such process


class Readings(unittest.TestCase):
    def test_rss_of_this_process(self):
        kb = procstat.rss_kb(os.getpid())
        self.assertGreater(kb, 1024)
        self.assertGreater(procstat.rss_bytes(os.getpid()), 1 << 20)

    def test_fd_count_follows_open_files(self):
        before = procstat.fd_count(os.getpid())
        r, w = os.pipe()
        try:
            self.assertEqual(procstat.fd_count(os.getpid()), before + 2)
        finally:
            os.close(r)
            os.close(w)
        self.assertEqual(procstat.fd_count(os.getpid()), before)

    def test_gone_process(self):
        self.assertIsNone(procstat.rss_kb(GONE))
        self.assertIsNone(procstat.fd_count(GONE))
        self.assertEqual(procstat.rss_bytes(GONE), 0)
        self.assertEqual(procstat.cpu_seconds(GONE), 0.0)


if __name__ == "__main__":
    unittest.main()
