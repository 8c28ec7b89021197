"""Prints the rolling-restart report (the dict from analyse.analyse) as plain-text tables."""


def _fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}{unit}"
    return f"{v}{unit}"


def table(rows, headers):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in rows:
        out.append("  ".join(str(c).rjust(w) if isinstance(c, (int, float)) else str(c).ljust(w)
                             for c, w in zip(r, widths)))
    return "\n".join(out)


def render(rep, cfg):
    out = []
    out.append(f"rolling restart: {cfg['nodes']} nodes, {cfg['pairs']} pairs "
               f"({cfg['expected_connections']} connections), {cfg['rate']} msg/s, "
               f"drain {cfg['drain_seconds']} s, pause {cfg['pause_seconds']} s"
               + (", SIGKILL instead of SIGTERM (demonstration)" if cfg.get("kill") else ""))
    out.append("")
    out.append(table(
        [(n["node"], n["signal"], _fmt(n.get("connections_at_drain")), _fmt(n["drain_s"], " s"),
          n["exit_code"], _fmt(n["ready_after_restart_s"], " s"),
          _fmt(n["all_connected_again_s"], " s"))
         for n in rep["nodes"]],
        ["node", "signal", "sockets drained", "signal→exit", "exit", "exit→ready",
         "signal→all connected"]))
    out.append("")
    t = rep["totals"]
    out.append(table([(k, t[k]) for k in ("scheduled", "sent", "acked", "delivered", "lost",
                                          "duplicated", "out_of_order", "unconfirmed",
                                          "send_failed", "recovery_failed", "reconnects")],
                     ["messages / connections", "count"]))
    if t.get("latency_ms"):
        out.append("delivery latency from the scheduled send time (recovered messages included): "
                   + ", ".join(f"{k} {v} ms" for k, v in t["latency_ms"].items()))
    out.append("")
    closes = ", ".join(f"{k}: {v}" for k, v in sorted(rep["closes"].items())) or "none"
    out.append(f"closes by code: {closes}   (1006: {rep['closes'].get('1006', 0)})")
    fails = rep["connections"].get("failures") or {}
    if fails:
        out.append("connect failures by kind (reconnect_* = a reconnect attempt refused, then "
                   "retried elsewhere): " + ", ".join(f"{k}: {v}" for k, v in sorted(fails.items())))
    out.append("")
    out.append(table(
        [(d["node"], d["reconnects"], _fmt(d["spread_window_s"], " s"),
          _fmt(d["even_spread_per_s"], "/s"), _fmt(d["max_second_per_s"], "/s"),
          _fmt(d["limit_per_s"], "/s"),
          ("ok" if d["ok"] else "TOO BURSTY") if d["compared"] else "not compared (< floor)")
         for d in rep["drains"]],
        ["drain of", "reconnects", "spread window", "even spread", "max second",
         "limit (2x)", "verdict"]))
    out.append(f"(even spread = reconnects from the drain's SIGTERM to the next one / "
               f"(0.6 x drain); compared when >= {cfg['min_even_spread']}/s)")
    if 0.6 * float(cfg["drain_seconds"]) <= 2.0:
        out.append("WARNING: with a spread window of 2 s or less even all reconnects in one "
                   "second stay under 2x the even spread: use --drain-seconds 4 or more")
    out.append("")
    secs = [r for r in rep["reconnects_per_second"] if r["reconnects"]]
    if secs:
        out.append("reconnects per second (t from the load's first second): " +
                   " ".join(f"{r['t_s']}:{r['reconnects']}" for r in secs))
        out.append("")
    samples = rep.get("node_samples") or []
    if samples:
        pings = [r["redis_ping_ms"] for r in samples if r.get("redis_ping_ms") is not None]
        loads = [r["load1"] for r in samples if r.get("load1") is not None]
        scrapes = [m["scrape_ms"] for r in samples for m in r["nodes"].values() if m.get("up")]
        out.append(f"machine and backplane during the run: load1 max {max(loads, default='-')}, "
                   f"Redis PING max {max(pings, default='-')} ms, node /metrics scrape max "
                   f"{max(scrapes, default='-')} ms, Redis SLOWLOG entries >= 5 ms: "
                   f"{rep.get('redis_slowlog_count', 0)}")
        out.append("")
    rec = rep["recovery"]
    out.append(f"time to full recovery after the last restart was ready: "
               f"{_fmt(rec.get('seconds'), ' s')} (1 s resolution; {rec.get('detail')})")
    out.append("")
    so = rep.get("stored_order")
    if so:
        out.append(f"stored order (Redis streams after the run): {so['streams']} streams, "
                   f"{so['entries']} entries, {so['inversions']} stored after a newer message "
                   f"of their sender; loadgen out_of_order {rep['totals']['out_of_order']}")
        for e in so["examples"][:5]:
            out.append(f"    {e['stream']} offset {e['offset']}: seq {e['seq']} after seq "
                       f"{e['after_seq']} (stored {e['stored_ms_after_it']} ms later)")
        out.append("")
    for w in rep.get("warnings") or []:
        out.append(f"WARNING: {w}")
    if rep["failures"]:
        for name, lines in (rep.get("node_log_evidence") or {}).items():
            if lines:
                out.append(f"{name} (warnings, errors, drain lines; last {min(10, len(lines))}):")
                out.extend(f"    {l}" for l in lines[-10:])
        for sec, lines in (rep.get("node_sample_evidence") or {}).items():
            out.append(f"nodes around the burst in second {sec} (/metrics once a second):")
            out.extend(f"    {l}" for l in lines)
        slow = sorted(rep.get("redis_slowlog") or [], key=lambda e: -e["took_ms"])[:5]
        if slow:
            out.append("slowest Redis commands during the run (SLOWLOG, >= 5 ms):")
            out.extend(f"    {e['unix']} {e['took_ms']} ms {e['command']}" for e in slow)
        out.append("FAIL:")
        out.extend(f"  - {f}" for f in rep["failures"])
    else:
        out.append("PASS: 0 lost, 0 duplicated, 0 closes 1006, every drain exited 0, "
                   "reconnects spread, full recovery")
    return "\n".join(out)
