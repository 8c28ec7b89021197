"""Small PromQL helpers for the observability checks (standard library only).

Not a parser: enough to list the metric names an expression reads and the label matchers of
each selector, for the expressions this repository writes (deploy/prometheus/alerts.yml,
grafana/dashboards/switchboard.json). Used by check_dashboard.py and scrape_test.py.
"""

import re

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan", "atan2",
}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
SELECTOR = re.compile(rf"({NAME})\s*\{{([^}}]*)\}}")
MATCHER = re.compile(rf'\s*({NAME})\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?')


def _strip(expr):
    """The expression without strings, label matchers, ranges and grouping label lists."""
    out = STRING.sub('""', expr)
    out = re.sub(r"\{[^}]*\}", "{}", out)
    out = re.sub(r"\[[^\]]*\]", "[]", out)
    return GROUPING.sub(" ", out)


def metric_names(expr):
    """The metric names an expression reads (functions, keywords and numbers left out)."""
    names = set()
    stripped = _strip(expr)
    for m in re.finditer(NAME, stripped):
        word = m.group(0)
        before = stripped[m.start() - 1] if m.start() else " "
        if before.isdigit() or before == ".":  # part of a number such as 1e-9
            continue
        rest = stripped[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def bare_names(expr):
    """Metric names that appear without a `{…}` selector."""
    stripped = _strip(expr)
    bare = set()
    for name in metric_names(expr):
        for m in re.finditer(rf"(?<![a-zA-Z0-9_:]){re.escape(name)}(?![a-zA-Z0-9_:])", stripped):
            if not stripped[m.end():].lstrip().startswith("{"):
                bare.add(name)
    return bare


def selectors(expr):
    """[(metric name, {label: (op, value)})] for every `name{…}` in the expression."""
    out = []
    for m in SELECTOR.finditer(expr):
        body, matchers, pos = m.group(2), {}, 0
        while pos < len(body.strip()):
            mm = MATCHER.match(body, pos)
            if not mm:
                raise ValueError(f"cannot read the label matchers {{{body}}}")
            matchers[mm.group(1)] = (mm.group(2), mm.group(3))
            pos = mm.end()
        out.append((m.group(1), matchers))
    return out


def balanced(expr):
    """True when (), [] and {} nest properly (outside strings)."""
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for ch in STRING.sub('""', expr):
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                return False
    return not stack


def substitute(expr, variables):
    """Replaces Grafana variables (`$name`, `${name}`) with the given values."""
    def repl(m):
        name = m.group(1) or m.group(2)
        if name not in variables:
            raise KeyError(f"unknown variable ${name} in {expr}")
        return variables[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, expr)
