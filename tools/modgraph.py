"""The module graph of a Rust crate, from its `use`/path references, and its cycles.

    python3 -m tools.modgraph crates/gateway/src [--depth 2] [--dot]

Exit 1 when there is a cycle. `make test-tools` checks that the gateway has none (issue 15:
dependencies inside the gateway run one way).

A module is a file (`a.rs` / `a/mod.rs` is `a`, `a/b.rs` is `a::b`), cut to --depth segments.
An edge a → b means code in a names `crate::b…` (or `super::…`/`self::…` resolving there).
Edges between a module and its own ancestor or descendant are left out (a parent declares
its children; a child using its parent's items is not a cycle between peers). Test modules
(`tests.rs`, `proptests.rs`, `tests/`, `proptests/`) are left out.
"""
import argparse, os, re, sys
from collections import defaultdict

def module_of(root, path):
    rel = os.path.relpath(path, root)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel in (["lib"], ["main"]):
        return ()
    return tuple(rel)

def strip(text):
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    # drop #[cfg(test)] mod … { … } blocks
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"

def paths(text, start):
    """Expand the use tree at text[start:] into lists of segments."""
    def tree(i):
        segs = []
        while True:
            while i < len(text) and text[i].isspace():
                i += 1
            if text.startswith("{", i):
                res, i = [], i + 1
                while True:
                    while i < len(text) and text[i] in " \n\t,":
                        i += 1
                    if i >= len(text) or text[i] == "}":
                        return [segs + r for r in res] or [segs], i + 1
                    sub, i = tree(i)
                    res.extend(sub)
            m = re.compile(IDENT).match(text, i)
            if not m:
                return [segs], i
            segs.append(m.group())
            i = m.end()
            if text.startswith("::", i):
                i += 2
                continue
            return [segs], i
    return tree(start)[0]

def graph(src, depth):
    """(modules, edges {module: set of modules}, cycles [sorted module lists])."""
    files = {}
    for d, _, fs in os.walk(src):
        for f in fs:
            if f.endswith(".rs"):
                p = os.path.join(d, f)
                m = module_of(src, p)
                if any(s in ("tests", "proptests") for s in m):
                    continue
                with open(p, encoding="utf-8") as f:
                    files[m] = strip(f.read())
    mods = set(files)
    def resolve(segs):
        for n in range(len(segs), 0, -1):
            if tuple(segs[:n]) in mods:
                return tuple(segs[:n])
        return None
    def cut(m):
        return "::".join(m[:depth]) or "crate"
    edges = defaultdict(set)
    for m, text in files.items():
        for ref in re.finditer(r"\b(crate|super|self)::", text):
            for segs in paths(text, ref.end()):
                kind = ref.group(1)
                base = list(m) if kind == "self" else list(m[:-1]) if kind == "super" else []
                while segs and segs[0] == "super":
                    base, segs = base[:-1], segs[1:]
                t = resolve(base + segs)
                if t is None:
                    continue
                s, d = cut(m), cut(t)
                if s == d or d.startswith(s + "::") or s.startswith(d + "::") or d == "crate" or s == "crate":
                    continue
                edges[s].add(d)
    nodes = sorted({cut(m) for m in mods} - {"crate"})
    # Tarjan's strongly connected components.
    index, low, stack, on, sccs, n = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            c = []
            while True:
                w = stack.pop(); on.discard(w); c.append(w)
                if w == v:
                    break
            if len(c) > 1:
                sccs.append(sorted(c))
    sys.setrecursionlimit(10000)
    for v in nodes:
        if v not in index:
            visit(v)
    return nodes, edges, sccs


def main():
    ap = argparse.ArgumentParser(description="The module graph of a Rust crate and its cycles.")
    ap.add_argument("src", help="the crate's src/ directory")
    ap.add_argument("--depth", type=int, default=2, help="module path segments kept (default 2)")
    ap.add_argument("--dot", action="store_true", help="print Graphviz DOT")
    a = ap.parse_args()
    nodes, edges, sccs = graph(a.src, a.depth)
    if a.dot:
        print("digraph gateway {")
        for s in nodes:
            for d in sorted(edges[s]):
                print(f'  "{s}" -> "{d}";')
        print("}")
        return 0
    for s in nodes:
        print(f"{s} -> {', '.join(sorted(edges[s])) or '·'}")
    print(f"\n{len(nodes)} modules, {sum(len(v) for v in edges.values())} edges, {len(sccs)} cycles")
    for c in sccs:
        cyc = [f"{x} -> {y}" for x in c for y in sorted(edges[x]) if y in c]
        print("cycle: " + " | ".join(cyc))
    return 1 if sccs else 0

if __name__ == "__main__":
    sys.exit(main())
