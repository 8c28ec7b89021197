"""The hot-path figures of BENCHMARKS.md, before → after: every figure is taken from the same
workload run twice in the same `make bench` — on the baseline binary (--baseline, results
under results["baseline"]) and on the current build (top level) — and from the peers where
they ran it. FIGURES defines each one (what, which run, which processes, which window);
section() renders the table with the definitions, rows() the target rows. Used by report.py.
"""

from .fmt import kib, met, msf, num, us


def fixed(w, rate):
    """The fixed-rate run at `rate` of a W2 result (ours or a peer's), or None."""
    for r in (w or {}).get("fixed", []) if (w or {}).get("ok", True) else []:
        if r["rate"] == rate:
            return r
    return None


def server_us(r):
    """Server CPU µs per delivered message of one W2 run (gateways or peer servers + Redis)."""
    if not r or not r.get("delivered"):
        return None
    if r.get("server_cpu_us_per_msg") is not None:
        return r["server_cpu_us_per_msg"]
    return round((r["gateways_cpu_s"] + r["redis_cpu_s"]) * 1e6 / r["delivered"], 2)


def _ok(res, key):
    w = (res or {}).get(key)
    return w if w and w.get("ok", True) and "error" not in w else None


def _get(key, fn):
    def get(res):
        w = _ok(res, key)
        return fn(w) if w else None
    return get


def _w2(rate, fn):
    return _get("W2_api", lambda w: fn(fixed(w, rate)) if fixed(w, rate) else None)


def _peer_w2(rate, fn):
    return lambda p: fn(fixed(p.get("w2"), rate)) if fixed(p.get("w2"), rate) else None


def _note(res, key, rate, p99=True):
    """Why a W2 run behind a figure did not pass (lost messages, p99 above 50 ms…);
    p99=False leaves the p99 reason out (for the p99 figure itself)."""
    r = fixed(_ok(res, key), rate)
    if not r or r.get("pass"):
        return ""
    why = [w for w in r["why"].split("; ") if p99 or not w.startswith("p99 ")]
    return f" (run: {'; '.join(why)})" if why else ""


def _room_note(res):
    """Why the W2 room run did not pass (its p99 included: it is not the figure)."""
    r = _ok(res, "W2_room")
    if not r or r.get("pass", True):
        return ""
    return f" (run: {r.get('why')})"


def _subscribers(res):
    """The W3 target is for 10,000 subscribers: say so when a run used another number."""
    n = (_ok(res, "W3") or {}).get("subscribers")
    return f" ({num(n)} subscribers)" if n and n != 10000 else ""


# (id, figure, definition, get(results) -> value, fmt, better, target text,
#  check(value, peers: {label: value}) -> bool, peer getter or None, note(results))
FIGURES = [
    ("w2_cpu", "W2 API, 5,000 msg/s: server CPU µs per delivered message (gateways + Redis)",
     "`direct --via api --rate 5000`, 3 nodes on one Redis: (utime+stime of the 3 gateways + "
     "redis-server) ÷ messages delivered, over the loadgen's `ready` → end of sending + 1 s. "
     "Peers: the same over their 3 server processes and their Redis.",
     _w2(5000, server_us), us, "lower", "≤ 50 µs and ≤ ⅓ of the best peer",
     lambda v, p: v <= 50 and all(v <= x / 3 for x in p.values() if x),
     _peer_w2(5000, server_us), lambda res: _note(res, "W2_api", 5000)),
    ("w2_batch_cpu", "W2 `/v1/batch` × 100, 5,000 msg/s: server CPU µs per message",
     "`direct --via api --batch 100 --batch-linger-ms L` (L = 1.5 × the time 100 messages take "
     "to arrive per API URL, so every request carries 100), same processes and window as above.",
     _get("W2_batch", lambda w: server_us(fixed(w, 5000))), us, "lower", "≤ 20 µs",
     lambda v, p: v <= 20, None, lambda res: _note(res, "W2_batch", 5000, p99=False)),
    ("w2_p99", "W2 API p99 at 2,000 msg/s",
     "`direct --via api --rate 2000`: 99th percentile of receive time − scheduled send time "
     "over every delivered message (open loop, no coordinated omission). Peer: `ws + ioredis`.",
     _w2(2000, lambda r: r["p99_ms"]), msf, "lower", "≤ 2 ms and ≤ ½ of `ws`'s",
     lambda v, p: v <= 2 and all(v <= x / 2 for k, x in p.items() if k == "ws" and x),
     _peer_w2(2000, lambda r: r["p99_ms"]), lambda res: _note(res, "W2_api", 2000, p99=False)),
    ("w2_sat", "W2 API saturation (p99 ≤ 50 ms)",
     "Highest rate of `direct --via api` that passes: achieved ≥ 95 % of the target, nothing "
     "lost or unconfirmed, p99 ≤ 50 ms (fixed rates, then ×1.5 steps and two bisections).",
     _get("W2_api", lambda w: (w.get("saturation") or {}).get("rate")),
     lambda v: "—" if v is None else f"{num(v)} msg/s", "higher", "≥ 20,000 msg/s",
     lambda v, p: v >= 20000, None, lambda res: ""),
    ("redis_user", "Redis CPU µs per user-channel message (W2 API, 5,000 msg/s)",
     "utime+stime of redis-server ÷ messages delivered in the W2 API run at 5,000 msg/s "
     "(user channels keep history by default). Peers: the same over their Redis.",
     _w2(5000, lambda r: r.get("redis_cpu_us_per_msg")), us, "lower", "≤ 15 µs",
     lambda v, p: v <= 15, _peer_w2(5000, lambda r: r.get("redis_cpu_us_per_msg")),
     lambda res: ""),
    ("redis_room", "Redis CPU µs per room message without history (W2 API, 5,000 msg/s)",
     "`direct --channel room --via api --rate 5000` with W2 API's pairs and duration: pair "
     "i's recipient subscribes to a room of its own (`room:…-p<i>`, no history: the default) "
     "before `ready`, its messages go through the next node's API as in W2 API; "
     "utime+stime of redis-server ÷ messages delivered over the same window as W2 API "
     "(`ready` → end of sending + 1 s); Redis time per command in the details (room.py).",
     _get("W2_room", lambda w: w.get("redis_cpu_us_per_msg")), us, "lower", "≤ 3 µs",
     lambda v, p: v <= 3, None, lambda res: _room_note(res)),
    ("w3_last", "W3 fan-out, 10,000 subscribers: last recipient p99",
     "`fanout --subscribers N` on `feed:bench` (N in the W3 details), 3 nodes: per message the "
     "time until the last subscriber has it, 99th percentile over the messages.",
     _get("W3", lambda w: w.get("last_p99_ms")), msf, "lower", "≤ 50 ms",
     lambda v, p: v <= 50, None, lambda res: _subscribers(res)),
    ("w1_slope", "W1 idle connection: gateway RSS slope over the steps",
     "VmRSS of the 3 gateways after each step of idle connections, least-squares slope "
     "over the total connections (steps in the W1 details).",
     _get("W1", lambda w: w.get("user_bytes_per_conn")), kib, "lower", "≤ 4 KiB",
     lambda v, p: v <= 4096, lambda p: (p.get("w1") or {}).get("user_bytes_per_conn"),
     lambda res: ""),
    ("w1_fresh", "W1 idle connection on a fresh node: (RSS after − before) ÷ connections",
     "One fresh gateway on its own Redis: VmRSS 1 s after it is ready, and 3 s after 5,000 "
     "idle connections are established; the difference ÷ the connections.",
     _get("W1_fresh", lambda w: w.get("bytes_per_conn")), kib, "lower", "≤ 5 KiB",
     lambda v, p: v <= 5120, None, lambda res: ""),
    ("w4_connects", "W4 JWT connects per gateway CPU-second",
     "`storm`: established connections ÷ utime+stime of the 3 gateways from just before the "
     "loadgen starts to its `ready` line (every attempt finished).",
     _get("W4", lambda w: w.get("connects_per_gateway_cpu_s")), num, "higher", "≥ 10,000",
     lambda v, p: v >= 10000, None, lambda res: ""),
]


def peer_values(res, getter):
    """{peer name: value} for the peers that ran (a getter of None: {})."""
    if getter is None:
        return {}
    out = {}
    for k, p in res.items():
        if k.startswith("peer_") and p.get("ok") and not p.get("skipped"):
            try:
                out[k[5:]] = getter(p)
            except (KeyError, TypeError):
                out[k[5:]] = None
    return out


def figures(res):
    """One dict per figure: before, after, ratio, peers, met."""
    base = res.get("baseline") or {}
    out = []
    for fid, name, definition, get, fmt, better, target, check, pget, note in FIGURES:
        after, before = get(res), get(base) if base else None
        peers = peer_values(res, pget)
        ok = None if after is None else bool(check(after, peers))
        ratio = round(after / before, 2) if after is not None and before else None
        out.append({"id": fid, "name": name, "definition": definition, "before": before,
                    "after": after, "ratio": ratio, "peers": peers, "fmt": fmt,
                    "better": better, "target": target, "met": ok,
                    "note_after": note(res), "note_before": note(base) if base else ""})
    return out


PEER_SHORT = {"socketio": "Socket.IO", "ws": "ws", "sockudo": "Sockudo"}


def section(res):
    base_meta = (res.get("meta") or {}).get("baseline") or {}
    out = ["## The hot path: before → after", ""]
    if base_meta.get("binary"):
        out += [f"Before = the baseline binary `{base_meta['binary']}` ({base_meta.get('label')}"
                f", sha256 {base_meta.get('sha256', '?')[:12]}); after = this revision. Both in "
                "this run, driven by the same load generator, each workload on the baseline "
                "right after the same workload on the current build, fresh processes for each.",
                ""]
    else:
        out += ["No baseline in this run (`make bench BENCH_BASELINE=none` or "
                "`--baseline none`): the *before* column is empty.", ""]
    out += ["| figure | before | after | after ÷ before | target | met? | peers, same run |",
            "|---|---|---|---|---|---|---|"]
    for f in figures(res):
        fmt = f["fmt"]
        peers = " · ".join(f"{PEER_SHORT.get(k, k)} {fmt(v)}" for k, v in f["peers"].items())
        out.append(f"| {f['name']} | {fmt(f['before'])}{f['note_before']} | "
                   f"{fmt(f['after'])}{f['note_after']} | "
                   f"{'—' if f['ratio'] is None else str(f['ratio']) + '×'} | {f['target']} | "
                   f"{met(f['met'])} | {peers or '—'} |")
    out += ["", "What each figure is:", ""]
    out += [f"- **{f[1]}**: {f[2]}" for f in FIGURES]
    out += ["- CPU is utime+stime from /proc/<pid>/stat (all threads), read at the two ends of "
            "the window; a system that falls behind (p99 of seconds) still works off its "
            "backlog after the window, so its CPU per message is understated — this favours "
            "the peers at 5,000 msg/s.", ""]
    return out


def rows(res):
    """(figure, target, measured, met?) rows for the summary printed at the end of a run."""
    return [(f["name"], f["target"], f"{f['fmt'](f['before'])} → {f['fmt'](f['after'])}",
             met(f["met"])) for f in figures(res)]
