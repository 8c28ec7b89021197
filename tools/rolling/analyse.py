"""Analysis of a rolling restart: the load generator's result JSON plus the restart events.

Pure functions (no processes, no clock), so tools/rolling/test_analyse.py can feed them
synthetic timelines. tools/rolling/restart.py drives the cluster and calls `analyse`.

Inputs
  result  the switchboard-loadgen result object (`--json`), see /tmp/specs/loadgen.md:
          messages{acked,delivered,lost,duplicated,out_of_order,unconfirmed,…}, closes{code:n},
          recovery_failed, reconnects, timeline[{unix_s,connected,reconnects,closes,sent,delivered}]
  events  one dict per restarted node, in order: node, signal ("TERM" or "KILL"), sigterm_unix,
          exit_unix, exit_code, ready_unix (unix seconds, floats)
  cfg     drain_seconds, rate, expected_connections, send_end_unix, min_even_spread,
          spread_factor (2.0), delivery_ratio (0.9)

Out of order: the loadgen's count is compared with the stored order of the same streams
(streams.stored_order): more out-of-order deliveries than stored inversions = the gateway
delivered out of offset order (a failure); stored inversions alone = a sender's publishes on
its draining connection stored after its newer ones (no protocol promise; a warning).

Per drain, the reconnects in the timeline seconds from its SIGTERM up to the next SIGTERM (the
last one: up to the end of sending) belong to it. Even spread = those reconnects / (0.6 × D),
the window over which the node spreads its goaways; every second must stay at or below
spread_factor × even spread. The comparison is made only when the even spread is at least
min_even_spread per second: below that, one-second buckets of a handful of events are Poisson
noise (an even spread of 2/s makes a second with 5 likely by chance alone).
"""

import math

from . import sampler

SPREAD_SHARE = 0.6  # the share of --drain-seconds over which a node spreads its closes


def per_second(timeline, key, total=None):
    """Per-second counts of `key`, whether the loadgen reports deltas or running totals.

    A series is taken as running totals when it never decreases and its last value matches
    `total` (the result's overall count) while its sum does not."""
    vals = [int(e.get(key) or 0) for e in timeline]
    if len(vals) > 1 and all(b >= a for a, b in zip(vals, vals[1:])) and total is not None:
        if vals[-1] == total and sum(vals) != total:
            return [vals[0]] + [b - a for a, b in zip(vals, vals[1:])]
    return vals


def _rates(timeline, counts):
    """Counts per second. The loadgen labels a sample with the second it was due to close; a
    tick that wakes late counts up to the moment it ran and the next label skips ahead, so
    an entry followed by a gap in unix_s covers several seconds and is divided over them
    (a sampler starved of CPU must not look like a burst)."""
    secs = [int(e["unix_s"]) for e in timeline]
    out = []
    for i, (s, n) in enumerate(zip(secs, counts)):
        span = max(1, secs[i + 1] - s) if i + 1 < len(secs) else 1
        out.append((s, n / span, n))
    return out


def drain_spreads(timeline, reconnects, events, cfg):
    """One entry per restart: the reconnects it caused and how evenly they came."""
    d = float(cfg["drain_seconds"])
    window = SPREAD_SHARE * d
    factor = float(cfg.get("spread_factor", 2.0))
    floor = float(cfg.get("min_even_spread", 5.0))
    rates = _rates(timeline, reconnects)
    out = []
    for k, ev in enumerate(events):
        start = math.floor(ev["sigterm_unix"])
        if k + 1 < len(events):
            end = math.floor(events[k + 1]["sigterm_unix"])
        else:
            end = math.floor(cfg["send_end_unix"]) + 1
        secs = [(s, r, n) for (s, r, n) in rates if start <= s < end]
        total = sum(n for (_, _, n) in secs)
        even = total / window if window > 0 else 0.0
        peak_s, peak = None, 0.0
        for s, r, _ in secs:
            if r > peak:
                peak_s, peak = s, r
        compared = even >= floor
        limit = factor * even
        out.append({
            "node": ev["node"],
            "from_unix_s": start,
            "to_unix_s": end,
            "reconnects": total,
            "spread_window_s": round(window, 3),
            "even_spread_per_s": round(even, 2),
            "max_second_per_s": round(peak, 2),
            "max_second_unix_s": peak_s,
            "limit_per_s": round(limit, 2),
            "compared": compared,
            "ok": (not compared) or peak <= limit,
        })
    return out


def first_full_second(timeline, delivered, since_unix, cfg):
    """The first timeline second at or after `since_unix` (floor) where every connection is
    connected and deliveries reach delivery_ratio × the offered rate, holding for the next
    second too when there is one. Returns (unix_s, reason) or (None, reason)."""
    want = int(cfg["expected_connections"])
    need = float(cfg.get("delivery_ratio", 0.9)) * float(cfg["rate"])
    stop = math.floor(cfg["send_end_unix"])  # deliveries after sending stops say nothing
    rates = _rates(timeline, delivered)
    rows = [(int(e["unix_s"]), int(e.get("connected") or 0), r)
            for e, (_, r, _) in zip(timeline, rates)]
    rows = [x for x in rows if math.floor(since_unix) <= x[0] < stop]
    ok = [c >= want and r >= need for (_, c, r) in rows]
    for i, good in enumerate(ok):
        if good and (i + 1 == len(ok) or ok[i + 1]):
            return rows[i][0], "ok"
    if not rows:
        return None, "no timeline seconds between the event and the end of sending"
    last = rows[-1]
    return None, (f"last second before sending stopped: connected {last[1]}/{want}, "
                  f"delivered {last[2]:.0f}/s of {need:.0f}/s needed")


def all_connected_again(timeline, since_unix, cfg):
    """The first second after the first dip below every connection at or after `since_unix`
    (the drain's closes showing) that ends with every connection connected again; None when
    that never happens while sending."""
    want = int(cfg["expected_connections"])
    stop = math.floor(cfg["send_end_unix"])
    dipped = False
    for e in timeline:
        s, c = int(e["unix_s"]), int(e.get("connected") or 0)
        if s < math.floor(since_unix) or s >= stop:
            continue
        if c < want:
            dipped = True
        elif dipped:
            return s
    return None


def analyse(result, events, cfg, stored=None):
    """The report dict, with `failures` (why the check fails; empty = pass) and `warnings`.

    `stored`: streams.stored_order() of the run's Redis, to tell a sender's publishes stored
    out of its order (after its reconnect; no protocol promise) from deliveries out of offset
    order (a broken guarantee). Without it any out-of-order delivery fails the check."""
    msgs = result.get("messages") or {}
    closes = {str(k): int(v) for k, v in (result.get("closes") or {}).items()}
    timeline = sorted(result.get("timeline") or [], key=lambda e: e["unix_s"])
    reconnects = per_second(timeline, "reconnects", result.get("reconnects"))
    delivered = per_second(timeline, "delivered", msgs.get("delivered"))
    t0 = timeline[0]["unix_s"] if timeline else 0

    nodes = []
    for ev in events:
        row = {
            "node": ev["node"],
            "signal": ev["signal"],
            "drain_s": round(ev["exit_unix"] - ev["sigterm_unix"], 3),
            "exit_code": ev["exit_code"],
            "ready_after_restart_s": (round(ev["ready_unix"] - ev["exit_unix"], 3)
                                      if ev.get("ready_unix") else None),
        }
        back = all_connected_again(timeline, ev["sigterm_unix"], cfg)
        row["all_connected_again_s"] = (round(max(0.0, back + 1 - ev["sigterm_unix"]), 1)
                                        if back is not None else None)
        nodes.append(row)

    spreads = drain_spreads(timeline, reconnects, events, cfg)
    rec = {"from": "last restart ready", "resolution_s": 1}
    if events and events[-1].get("ready_unix"):
        last_ready = events[-1]["ready_unix"]
        full, why = first_full_second(timeline, delivered, last_ready, cfg)
        rec["seconds"] = round(max(0.0, full + 1 - last_ready), 1) if full is not None else None
        rec["detail"] = why
    else:
        rec["seconds"], rec["detail"] = None, "the last node never became ready"

    totals = {k: int(msgs.get(k) or 0) for k in
              ("scheduled", "sent", "acked", "send_failed", "unconfirmed", "delivered", "lost",
               "duplicated", "out_of_order")}
    lat = result.get("latency_us") or {}
    totals["latency_ms"] = {k: round(lat[k] / 1000, 1) for k in ("p50", "p99", "p999", "max")
                            if lat.get(k) is not None}
    totals["recovery_failed"] = int(result.get("recovery_failed") or 0)
    totals["reconnects"] = int(result.get("reconnects") or sum(reconnects))
    conns = result.get("connections") or {}

    failures = []
    if totals["lost"] > 0:
        failures.append(f"{totals['lost']} acknowledged messages were never delivered (lost)")
    if closes.get("1006", 0) > 0:
        failures.append(f"{closes['1006']} connections closed without a close frame (1006)")
    if totals["duplicated"] > 0:
        failures.append(f"{totals['duplicated']} messages were delivered twice (duplicated)")
    warnings = []
    ooo = totals["out_of_order"]
    if stored is None:
        if ooo > 0:
            failures.append(f"{ooo} messages arrived out of order")
    else:
        inv = int(stored["inversions"])
        if ooo > inv:
            failures.append(
                f"{ooo} messages arrived out of order but only {inv} were stored out of their "
                f"sender's order: {ooo - inv} deliveries broke offset order")
        elif ooo < inv:
            warnings.append(f"{inv} messages stored out of their sender's order but only {ooo} "
                            f"arrived out of order (streams trimmed?)")
        if inv > 0:
            warnings.append(
                f"{inv} messages were stored after newer ones of the same sender (a publish on "
                f"the draining connection landed after the sender's publishes on its new "
                f"connection; {totals['unconfirmed']} publishes were unconfirmed)")
    if totals["recovery_failed"] > 0:
        failures.append(f"{totals['recovery_failed']} resumes answered recovered:false")
    if totals["acked"] == 0:
        failures.append("no message was acknowledged: the load did not run")
    if int(conns.get("failed") or 0) > 0:
        failures.append(f"{conns['failed']} connections failed during the setup phase")
    for n in nodes:
        if n["signal"] == "TERM" and n["exit_code"] != 0:
            failures.append(f"node {n['node']} exited with {n['exit_code']} after SIGTERM")
        if n["ready_after_restart_s"] is None:
            failures.append(f"node {n['node']} did not become ready after its restart")
    for s in spreads:
        if not s["ok"]:
            failures.append(
                f"node {s['node']} drain: {s['max_second_per_s']:.0f} reconnects in second "
                f"{s['max_second_unix_s']} > {s['limit_per_s']:.0f} "
                f"(2 x even spread {s['even_spread_per_s']:.1f}/s = {s['reconnects']} / "
                f"{s['spread_window_s']} s)")
    if events and rec["seconds"] is None:
        failures.append(f"no full recovery after the last restart: {rec['detail']}")

    return {
        "nodes": nodes,
        "totals": totals,
        "closes": closes,
        "connections": {k: conns.get(k) for k in ("attempted", "established", "failed",
                                                   "failures")},
        "reconnects_per_second": [
            {"t_s": int(e["unix_s"]) - t0, "unix_s": int(e["unix_s"]), "reconnects": n,
             "connected": int(e.get("connected") or 0), "delivered": d}
            for e, n, d in zip(timeline, reconnects, delivered)],
        "drains": spreads,
        "recovery": rec,
        "stored_order": stored,
        "failures": failures,
        "warnings": warnings,
        "ok": not failures,
    }


def stall_retry_evidence(rep):
    """The stall evidence when every failure is a drain's spread check and each of those
    windows shows a stall; else an empty list."""
    bad = [d for d in rep["drains"] if not d["ok"]]
    spread_msgs = [f for f in rep["failures"] if " drain: " in f and "reconnects in second" in f]
    if not bad or len(spread_msgs) != len(rep["failures"]):
        return []
    evidence = []
    for d in bad:
        peak = d["max_second_unix_s"]  # a stall compresses the reconnects due before it
        found = sampler.stalls(rep.get("node_samples") or [], rep.get("_timeline") or [],
                               max(d["from_unix_s"], peak - 4), peak + 1)
        if not found:
            return []
        evidence.extend(found)
    return evidence
