"""The repository stands on its own: no tracked file points outside it (the protocol is
docs/protocol.md; the contract it grew from is not part of a clone).

    python3 -m unittest tools.test_layout
"""

import os
import subprocess
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTSIDE = ("../shared", "PROTOCOL.md", "STYLE.md", "PERFORMANCE-NOTES.md")
# Third-party code kept as it came.
SKIP = ("vendor/",)


class SelfContained(unittest.TestCase):
    def test_no_file_refers_outside_the_repository(self):
        files = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout.decode().split("\0")
        self.assertGreater(len(files), 100)
        found = []
        for f in files:
            if not f or f.startswith(SKIP):
                continue
            try:
                with open(os.path.join(ROOT, f), encoding="utf-8") as fh:
                    text = fh.read()
            except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
                continue
            for n, line in enumerate(text.splitlines(), 1):
                if any(o in line for o in OUTSIDE) and "tools/test_layout.py" not in f:
                    found.append(f"{f}:{n}: {line.strip()[:100]}")
        self.assertEqual(found, [], "references outside the repository:\n" + "\n".join(found))


if __name__ == "__main__":
    unittest.main()
