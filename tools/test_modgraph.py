"""The module graph (tools/modgraph.py): it finds a cycle, it leaves out parents, children and
test modules, and the gateway's modules depend on each other one way (issue 15).

    python3 -m unittest tools.test_modgraph
"""

import os
import tempfile
import unittest

from . import modgraph

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def crate(files):
    d = tempfile.mkdtemp()
    for path, text in files.items():
        p = os.path.join(d, path)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
    return d


class Graph(unittest.TestCase):
    def test_a_cycle_between_peers_is_found(self):
        src = crate({
            "main.rs": "mod a; mod b; mod c;",
            "a.rs": "use crate::b::{Thing, other::More};",
            "b.rs": "pub mod other; fn f() { crate::c::g() }",
            "b/other.rs": "use super::super::a::X;",
            "c.rs": "// crate::a::X in a comment\nconst S: &str = \"crate::a::X\";",
        })
        _, edges, cycles = modgraph.graph(src, 1)
        self.assertEqual(edges["a"], {"b"})
        self.assertEqual(edges["b"], {"a", "c"})
        self.assertEqual(edges["c"], set(), "comments and strings are not references")
        self.assertEqual(cycles, [["a", "b"]])
        _, edges, cycles = modgraph.graph(src, 2)
        self.assertEqual(edges["b::other"], {"a"})
        self.assertEqual(cycles, [["a", "b::other"]])

    def test_parents_children_and_tests_are_left_out(self):
        src = crate({
            "lib.rs": "mod a; mod b;",
            "a.rs": "mod inner; use self::inner::Y;\n#[cfg(test)]\npub(crate) mod tests { use crate::b::Z; }",
            "a/inner.rs": "use super::X;",
            "a/tests.rs": "use crate::b::Z;",
            "b.rs": "use crate::a::X;",
        })
        _, edges, cycles = modgraph.graph(src, 2)
        self.assertEqual(edges["a"], set())
        self.assertEqual(edges["a::inner"], set())
        self.assertEqual(edges["b"], {"a"})
        self.assertEqual(cycles, [])

    def test_the_gateway_has_no_cycle(self):
        src = os.path.join(ROOT, "crates", "gateway", "src")
        for depth in (1, 2):
            nodes, _, cycles = modgraph.graph(src, depth)
            self.assertGreater(len(nodes), 10)
            self.assertEqual(cycles, [], f"module cycles at depth {depth}: {cycles}")


if __name__ == "__main__":
    unittest.main()
