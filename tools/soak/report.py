"""The soak's verdict and its report (markdown), from the ledger's outcome, the pool's counts
and the RSS/fd checkpoints. Pure functions: test_soak.py pins what passes and what fails."""

from .footprint import table


def checks(outcome, counts, growth_rows, redis_restart):
    """[(name, ok, detail)]: every pass criterion of the soak.

    redis_restart "keep" (AOF appendfsync always, restarted with its data) is strict: no
    acknowledged user-channel message may even need a gap answer. "empty" (no persistence)
    allows gaps that a `resync` frame or a `recovered:false` answered."""
    c = counts
    out = [
        ("publishes acknowledged", outcome["acked"] > 0, f"{outcome['acked']}"),
        ("connections churned", c.get("reconnects", 0) > 0, f"{c.get('reconnects', 0)} reconnects"),
        ("0 acknowledged user-channel messages lost", outcome["lost"] == 0, f"{outcome['lost']} lost"),
        ("each delivered offset carried its acknowledged message", outcome["mismatched"] == 0,
         f"{outcome['mismatched']} mismatched"),
        ("no silent gap (user and room channels)",
         sum(c.get(k, 0) for k in ("user_silent_gaps", "user_silent_epoch_changes",
                                   "room_silent_gaps", "room_silent_epoch_changes")) == 0,
         "gaps user {} room {}, unannounced epoch changes user {} room {}".format(
             c.get("user_silent_gaps", 0), c.get("room_silent_gaps", 0),
             c.get("user_silent_epoch_changes", 0), c.get("room_silent_epoch_changes", 0))),
        ("no duplicate delivery", c.get("user_duplicates", 0) + c.get("room_stream_repeats", 0) == 0,
         f"user {c.get('user_duplicates', 0)}, room {c.get('room_stream_repeats', 0)}"),
    ]
    if redis_restart == "keep":
        out.append(("Redis kept its data: no gap needed an answer", outcome["gap_answered"] == 0,
                    f"{outcome['gap_answered']} gap-answered, {c.get('resync_user', 0)} resync frames, "
                    f"{c.get('welcome_recovered_false', 0)} recovered:false, "
                    f"{c.get('goaway_resync', 0)} goaway resync"))
    for g in growth_rows:
        if g["verdict"] == "restarted":
            continue
        detail = g["verdict"] if "rss_growth" not in g else (
            f"RSS {g['rss_before_kb'] / 1024:.1f} → {g['rss_after_kb'] / 1024:.1f} MiB "
            f"({g['rss_growth']:+.1%}), fds {g['fds_before']} → {g['fds_after']} ({g['fds_growth']:+.1%})")
        out.append((f"{g['name']} flat after warm-up", g["ok"], detail))
    return out


TOTALS = [
    ("user-channel publishes acknowledged (API + client frames)", "acked"),
    ("delivered to their user", "delivered"),
    ("lost", "lost"),
    ("not delivered, gap answered by resync / recovered:false", "gap_answered"),
    ("delivered at an offset that held another message", "mismatched"),
    ("delivered but never acknowledged (publish answer lost)", "delivered_unacked"),
]
COUNTS = [
    ("API publishes sent / acknowledged", "publish_api_sent", "user_acked_api"),
    ("client user publishes sent / acknowledged", "publish_user_sent", "user_acked_ws"),
    ("client room publishes sent / acknowledged", "publish_room_sent", "room_acked"),
    ("room messages delivered", "room_delivered"),
    ("duplicates (user / room)", "user_duplicates", "room_stream_repeats"),
    ("resync frames (user / room)", "resync_user", "resync_room"),
    ("goaway resync (today's answer: close 1012 follows)", "goaway_resync"),
    ("recovered:false (welcome / room subscribe)", "welcome_recovered_false", "room_recovered_false"),
    ("recovered:true (welcome / room subscribe)", "welcome_recovered_true", "room_recovered_true"),
    ("connections / reconnects", "connects", "reconnects"),
]


def totals(outcome, counts):
    """[(label, value)] rows of the totals table; every other count after the named ones."""
    rows = [(label, str(outcome.get(k, 0))) for label, k in TOTALS]
    named = {k for _, *ks in COUNTS for k in ks}
    for label, *keys in COUNTS:
        rows.append((label, " / ".join(str(counts.get(k, 0)) for k in keys)))
    closes = sorted((k, v) for k, v in counts.items() if k.startswith("closes_"))
    rows.append(("closes by code", ", ".join(f"{k[len('closes_'):]} {v}" for k, v in closes) or "none"))
    named |= {k for k, _ in closes}
    rest = sorted((k, v) for k, v in counts.items() if k not in named and k not in dict(TOTALS).values()
                  and not k.startswith("user_acked") and k != "user_delivered")
    if rest:
        rows.append(("other counts", ", ".join(f"{k} {v}" for k, v in rest)))
    return rows


def render(meta, outcome, counts, growth_rows, samples, names, events, results, every, after_rows=()):
    """The report; `after_rows` (checkpoint C → B, after the restarts) is shown for information."""
    lines = [f"## Soak: {'PASS' if all(ok for _, ok, _ in results) else 'FAIL'}", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    lines += ["", "### Events", ""]
    lines += [f"- t={t:.0f} s: {what}" for t, what in events]
    lines += ["", f"### RSS and open fds over time (a row about every {every:.0f} s)", "",
              table(samples, names, every), "",
              "### Checkpoints (idle: every client closed)", "",
              "| process | from → to | verdict | RSS (MiB) | growth | fds | growth |",
              "|---|---|---|---:|---:|---:|---:|"]
    for span, rows in (("A → B (judged)", growth_rows), ("C → B (after the restarts)", after_rows)):
        for g in rows:
            if "rss_growth" in g:
                verdict = g["verdict"] if span.endswith("(judged)") else "—"
                lines.append(f"| {g['name']} | {span} | {verdict} | {g['rss_before_kb'] / 1024:.1f} → "
                             f"{g['rss_after_kb'] / 1024:.1f} | {g['rss_growth']:+.1%} | "
                             f"{g['fds_before']} → {g['fds_after']} | {g['fds_growth']:+.1%} |")
            elif span.endswith("(judged)"):
                lines.append(f"| {g['name']} | {span} | {g['verdict']} | | | | |")
    lines += ["", "### Totals", "", "| | |", "|---|---:|"]
    lines += [f"| {label} | {value} |" for label, value in totals(outcome, counts)]
    lines += ["", "### Checks", ""]
    lines += [f"- {'ok  ' if ok else 'FAIL'} {name}: {detail}" for name, ok, detail in results]
    return "\n".join(lines) + "\n"
