"""The detail sections of BENCHMARKS.md (per workload for the current build and the
baseline, side by side, method). Used by report.py."""

from .fmt import kib, mib, msf, num
from .hotpath import server_us
from .report import _fixed

W2_HEAD = ["| rate | achieved | delivered | lost | p50 | p99 | p99.9 | max | gw CPU-s | "
           "Redis CPU-s | msgs/server CPU-s | server µs/msg | gw µs/msg | Redis µs/msg | pass |",
           "|---" * 15 + "|"]


def w2_row(r, tag=""):
    return (f"| {num(r['rate'])}{tag} | {num(r['rate_achieved'])} | {num(r['delivered'])} | "
            f"{r.get('lost')} | {msf(r['p50_ms'])} | {msf(r['p99_ms'])} | {msf(r['p999_ms'])} | "
            f"{msf(r['max_ms'])} | {r['gateways_cpu_s']:.2f} | {r['redis_cpu_s']:.2f} | "
            f"{num(r['msgs_per_server_cpu_s'])} | {server_us(r)} | "
            f"{r['gateway_cpu_us_per_msg']} | {r.get('redis_cpu_us_per_msg')} | "
            f"{'yes' if r['pass'] else 'no: ' + r['why']} |")


def per_command(per_msg):
    """`evalsha 31.0 µs (1.0 calls), …`, the most expensive first (results.json sorts keys)."""
    return ", ".join(f"{k} {v['us']} µs ({v['calls']} calls)"
                     for k, v in sorted(per_msg.items(), key=lambda kv: -kv[1]["us"]))


def failed(w):
    return [f"**Failed:** {w.get('error')}", "", "```", (w.get("trace") or "").strip()[-1500:],
            "```", ""]


def w1_section(w1, title):
    out = [title, ""]
    if not w1:
        return out + ["Not run.", ""]
    if not w1.get("ok", True):
        return out + failed(w1)
    out += ["| connections (total) | per node | server RSS total | Redis RSS | TCP inuse | "
            "TCP mem pages | socket slab |", "|---|---|---|---|---|---|---|"]
    for p in w1["points"]:
        out.append(f"| {num(p['connections'])} | {num(p['connections'] / w1['nodes'])} | "
                   f"{mib(p['server_rss_total'])} | {mib(p['redis_rss'])} | "
                   f"{num(p['sockstat']['tcp_inuse'])} | {num(p['sockstat']['tcp_mem_pages'])} | "
                   f"{mib(sum(p['slab'].values()))} |")
    slopes = ", ".join(kib(s) for s in w1["per_node_slopes"])
    out += ["",
            f"- Server RSS slope (least squares over the steps): **{kib(w1['user_bytes_per_conn'])}"
            f"** per connection (per node: {slopes}).",
            f"- sockstat: TCP inuse +{num(w1['tcp_inuse_delta'])} = "
            f"{w1['sockets_per_conn']:.2f} sockets per connection (both loopback ends); TCP mem "
            f"{num(w1['tcp_mem_delta_bytes'])} B; slope over inuse → "
            f"{kib(w1['kernel_tcp_bytes_per_conn'])} per socket (= the server's end; "
            "system-wide counters, other sockets on the box add noise).",
            f"- Socket slab caches {sorted(w1['slab_delta_bytes'])}: "
            f"{num(sum(w1['slab_delta_bytes'].values()))} B; slope over inuse → "
            f"{kib(w1['kernel_slab_bytes_per_conn'])} per socket.",
            *([f"- **Noisy:** {w1['sockets_per_conn']:.2f} TCP sockets per connection instead "
               "of 2 — other processes opened or closed sockets during the measurement, so the "
               "system-wide sockstat figures are unreliable for this run."]
              if w1["sockets_per_conn"] and not 1.8 <= w1["sockets_per_conn"] <= 2.2 else []),
            *([f"- {w1['stopped']}."] if w1.get("stopped") else []),
            "- Connect runs: " + "; ".join(
                f"{num(r['established'])} ok / {r['failed']} failed in {r['connect_wall_s']} s"
                for r in w1["runs"]), ""]
    return out


def w2_section(w, title):
    out = [title, ""]
    if not w:
        return out + ["Not run.", ""]
    if not w.get("ok", True):
        return out + failed(w)
    out += W2_HEAD
    out += [w2_row(r) for r in w.get("fixed", [])]
    sat = w.get("saturation")
    if sat:
        out += [w2_row(r, " (search)") for r in sat["runs"]]
    if w.get("half"):
        out.append(w2_row(w["half"], " (½ sat.)"))
    if sat:
        out += ["", f"Saturation: **{num(sat['rate'])} msg/s** ({sat['stopped']})."]
    first = (w.get("fixed") or [{}])[0]
    if first.get("batch_linger_ms"):
        out += ["", f"`--batch {first['batch']} --batch-linger-ms L`: L = "
                + ", ".join(f"{r['batch_linger_ms']} ms at {num(r['rate'])}/s"
                            for r in w.get("fixed", [])) + " — long enough for every request "
                "to carry the whole batch, so p99 includes up to L of batching delay."]
    if first.get("redis_per_msg"):
        out += ["", f"Redis time per delivered message at {num(first['rate'])} msg/s (INFO "
                "commandstats over the window; commands ≥ 0.5 µs): " + per_command(
                    first["redis_per_msg"]) + "."]
    if first.get("cmd"):
        out += ["", f"Command of the first run: `{first['cmd']}`"]
    return out + [""]


def peers_section(res):
    out = ["## Side by side with the peers", ""]
    peer_keys = [k for k in res if k.startswith("peer_")]
    if not peer_keys:
        return out + ["Not run.", ""]
    ours_w1, ours_w2 = res.get("W1") or {}, res.get("W2_api") or {}
    ran = [(k, res[k]) for k in peer_keys if res[k].get("ok") and not res[k].get("skipped")]
    for k in peer_keys:
        p = res[k]
        if not p.get("ok"):
            out.append(f"- {k[5:]}: **failed**: {p.get('error')}")
        elif p.get("skipped"):
            out.append(f"- {k[5:]}: **skipped** — {p['skipped']}")
        for e in p.get("errors", []):
            out.append(f"- {k[5:]}: {e}")
    if not ran:
        return out + ["", "No peer ran.", ""]
    head = "| figure | better | Switchboard | " + " | ".join(
        f"{p['label']} | ours/theirs" for _, p in ran) + " |"
    out += ["", head, "|---|---|---|" + "---|---|" * len(ran)]

    def row(name, better, ours, theirs_fn, fmt, ratios=True):
        cells = [f"| {name} | {better} | {fmt(ours)} |"]
        for _, p in ran:
            t = theirs_fn(p)
            ratio = f"{ours / t:.2f}" if ratios and ours is not None and t else "—"
            cells.append(f" {fmt(t)} | {ratio} |")
        out.append("".join(cells))

    def w1v(key):
        return lambda p: (p.get("w1") or {}).get(key)
    row("W1 bytes per idle connection (RSS + TCP buffers)", "lower",
        ours_w1.get("total_bytes_per_conn"), w1v("total_bytes_per_conn"), kib)
    row("W1 … plus socket slab", "lower", ours_w1.get("total_with_slab_bytes_per_conn"),
        w1v("total_with_slab_bytes_per_conn"), kib)
    rates = sorted({r["rate"] for _, p in ran for r in (p.get("w2") or {}).get("fixed", [])})
    for rate in rates:
        o = _fixed(ours_w2, rate) or {}
        for key, name, better, fmt in (("p50_ms", "p50", "lower", msf),
                                       ("p99_ms", "p99", "lower", msf),
                                       ("p999_ms", "p99.9", "lower", msf),
                                       ("msgs_per_server_cpu_s", "messages per server CPU-s",
                                        "higher", num)):
            row(f"W2 API {num(rate)} msg/s: {name}", better, o.get(key),
                lambda p, key=key, rate=rate: (_fixed(p.get("w2"), rate) or {}).get(key), fmt)
        row(f"W2 API {num(rate)} msg/s: lost", "lower", o.get("lost"),
            lambda p, rate=rate: (_fixed(p.get("w2"), rate) or {}).get("lost"), num,
            ratios=False)
    out += ["", "Peer details (same columns as above):", ""]
    for k, p in ran:
        out += w1_section(p.get("w1"), f"#### {p['label']}: W1")
        out += w2_section({"ok": True, **(p.get("w2") or {})} if p.get("w2") else None,
                          f"#### {p['label']}: W2 API")
    return out


def fresh_section(f, title):
    out = [title, ""]
    if not f:
        return out + ["Not run.", ""]
    if not f.get("ok", True):
        return out + failed(f)
    return out + [f"- One fresh node on its own Redis: RSS {mib(f['rss_before'])} before, "
                  f"{mib(f['rss_after'])} with {num(f['established'])} idle connections "
                  f"({f['failed']} failed) → **{kib(f['bytes_per_conn'])}** per connection.",
                  f"- Command: `{f['cmd']}`", ""]


def room_section(r, title, user=None):
    """W2 room (room.py), with `user` — the W2 API run at the same rate — next to it."""
    out = [title, ""]
    if not r:
        return out + ["Not run.", ""]
    if not r.get("ok", True):
        return out + failed(r)
    out += [f"`direct --channel room --via api`: {num(r['pairs'])} pairs for "
            f"{r['duration_s']} s, each pair on a room of its own without history (the "
            "recipient subscribed before `ready`), its messages published through the next "
            "node's API — W2 API's layout and window; W2 API's run at the same rate on user "
            "channels below it.", ""]
    out += W2_HEAD
    out.append(w2_row(r, " rooms"))
    if user:
        out.append(w2_row(user, " user channels (W2 API)"))
    out += ["", f"- Redis {r['redis_cpu_s']:.2f} CPU-s over the window ({r['wall_s']:.1f} s) = "
            f"**{r.get('redis_cpu_us_per_msg')} µs** per delivered room message; its idle CPU "
            f"scaled to the window: {r.get('redis_idle_cpu_s')} s, net of it "
            f"{r.get('redis_net_us_per_msg')} µs."]
    if r.get("redis_per_msg"):
        line = ("- Redis time per delivered message (INFO commandstats over the window; "
                "commands ≥ 0.1 µs): rooms " + per_command(r["redis_per_msg"]))
        if user and user.get("redis_per_msg"):
            line += "; user channels (≥ 0.5 µs) " + per_command(user["redis_per_msg"])
        out.append(line + ".")
    return out + [f"- Command: `{r['cmd']}`", ""]


def details(res, baseline=False):
    """The per-workload sections; baseline=True: the baseline's (no peers, no method)."""
    who = "baseline" if baseline else "Switchboard"
    out = ["## Details" + (" of the baseline (before)" if baseline else ""), ""]
    out += w1_section(res.get("W1"), f"### W1 idle connections ({who})")
    out += fresh_section(res.get("W1_fresh"), f"### W1 on a fresh node ({who})")
    batch = (res.get("W2_batch") or {}).get("batch") or 100
    for key, title in (("W2_api", "W2 1:1 across 3 nodes, API publish"),
                       ("W2_ws", "W2 1:1 across 3 nodes, WebSocket publish"),
                       ("W2_batch", f"W2 1:1 across 3 nodes, API /v1/batch × {batch}")):
        if baseline and key not in res:
            continue
        out += w2_section(res.get(key), f"### {title} ({who})")
    room = res.get("W2_room")
    out += room_section(room, f"### W2 room messages without history ({who})",
                        user=_fixed(res.get("W2_api"), (room or {}).get("rate")))
    w3 = res.get("W3")
    out += [f"### W3 room fan-out ({who})", ""]
    if w3 and w3.get("ok"):
        out += [f"- {num(w3['subscribers'])} subscribers of `feed:bench` ({num(w3['established'])} "
                f"connected), {w3['messages']} messages at {w3['rate']}/s via the API.",
                f"- Last recipient: p50 {msf(w3['last_p50_ms'])}, p99 {msf(w3['last_p99_ms'])}, "
                f"max {msf(w3['last_max_ms'])}. Per recipient: p50 {msf(w3['p50_ms'])}, p99 "
                f"{msf(w3['p99_ms'])}, max {msf(w3['max_ms'])}.",
                f"- Delivered {num(w3['delivered'])} of {num(w3['expected_deliveries'])}, lost "
                f"{w3['lost']}; CPU over the window: gateways {w3['gateways_cpu_s']:.2f} s, Redis "
                f"{w3['redis_cpu_s']:.2f} s in {w3['wall_s']:.1f} s.",
                f"- Command: `{w3['cmd']}`", ""]
    else:
        out += failed(w3) if w3 else ["Not run.", ""]
    w4 = res.get("W4")
    out += [f"### W4 connect storm, HS256 JWT per connection ({who})", ""]
    if w4 and w4.get("ok"):
        out += [f"- {num(w4['established'])} of {num(w4['connections'])} established "
                f"(concurrency {w4['concurrency']}), failures {w4['failures']}, "
                f"{num(w4['connect_per_s_wall'])} connects/s wall.",
                f"- Handshake (TCP connect → welcome): p50 {msf(w4['handshake_p50_ms'])}, p99 "
                f"{msf(w4['handshake_p99_ms'])}, max {msf(w4['handshake_max_ms'])}.",
                f"- CPU over the storm ({w4['wall_s']:.2f} s): gateways {w4['gateways_cpu_s']:.2f}"
                f" s, Redis {w4['redis_cpu_s']:.2f} s → {num(w4['connects_per_gateway_cpu_s'])} "
                f"connects per gateway CPU-s ({num(w4['connects_per_server_cpu_s'])} with Redis).",
                f"- /proc/net/netstat TcpExt deltas: {w4['netstat_delta']}; gateway "
                f"switchboard_handshake_rejected_total +{w4.get('handshake_rejected_metric')}.",
                f"- Command: `{w4['cmd']}`", ""]
    else:
        out += failed(w4) if w4 else ["Not run.", ""]
    if baseline:
        return out
    w5 = res.get("W5")
    out += ["### W5 slow consumers", ""]
    if w5 and w5.get("ok"):
        out += ["| run | subscribers | slow | delivered | lost | p50 | p99 | max | RSS before | "
                "at ready | peak | after | slow closes |", "|---" * 13 + "|"]
        for tag in ("baseline", "with-slow"):
            r = w5[tag]
            out.append(f"| {tag} | {r['subscribers']} | {r['slow']} | {num(r['delivered'])} | "
                       f"{r['lost']} | {msf(r['p50_ms'])} | {msf(r['p99_ms'])} | "
                       f"{msf(r['max_ms'])} | {mib(r['rss']['before'])} | {mib(r['rss']['ready'])}"
                       f" | {mib(r['rss']['peak'])} | {mib(r['rss']['after'])} | "
                       f"{r.get('slow_closes')} |")
        out += ["", f"- {w5['with-slow']['messages']} messages of {w5['with-slow']['payload_bytes']}"
                f" B at {w5['with-slow']['rate']}/s. Extra peak RSS with slow consumers "
                f"{mib(w5['extra_peak_rss'])} (bound {mib(w5['rss_bound'])} = slow × 2 × the "
                "4 MiB outbound queue cap: a full queue plus one coalesced write in flight; "
                f"buffering everything would take {mib(w5.get('unbounded_bytes'))}); RSS after − before "
                f"{mib(w5['rss_after_minus_before'])}. Gateway "
                "switchboard_slow_consumer_disconnects_total during the slow run: "
                f"+{w5['with-slow'].get('slow_consumer_disconnects_metric')}.",
                f"- Command: `{w5['with-slow']['cmd']}`", ""]
    else:
        out += failed(w5) if w5 else ["Not run.", ""]
    if res.get("baseline"):
        out += details(res["baseline"], baseline=True)
    out += peers_section(res)
    out += METHOD
    return out


METHOD = ["", "## How the figures are measured", "",
          "- Gateways run with `--rate-limit 0 --max-connections 200000 --namespaces feed "
          "--heartbeat-ms 25000` (tools/cluster.py: 3 nodes, Redis on a free port with "
          "`--save \"\" --appendonly no`); every workload starts a fresh cluster; every "
          "measurement uses fresh loadgen connections.",
          "- CPU: utime+stime of /proc/<pid>/stat (÷ SC_CLK_TCK) of each gateway (or peer "
          "server, with its child processes) and of redis-server, read at the start and the "
          "end of the measured window only: W2/W3 from the loadgen's `ready` line (setup done) "
          "to the end of the sending phase + 1 s (W3: + 2 s); W4 from just before the loadgen "
          "starts to its `ready` line (every connect attempt finished).",
          "- W1: VmRSS of the server processes only (the loadgen lives on this box too and is "
          "not counted), least-squares slope over the connection steps. Kernel: on loopback "
          "both ends of every connection are sockets of this kernel (sockstat TCP inuse grows "
          "by 2 per connection), so TCP mem pages × page size and the socket slab bytes are "
          "taken per TCP socket (least-squares slope over TCP inuse) = one end, the server's.",
          "- W2: open loop, the payload carries its scheduled send time, latency = receive − "
          "scheduled (no coordinated omission). Messages per server CPU-second = delivered ÷ "
          "(gateway + Redis CPU-s). Saturation search: ×1.5 steps, then up to two bisections; a run "
          "passes when achieved ≥ 95 % of the target, nothing lost / failed / unconfirmed, and "
          "p99 ≤ 50 ms. The figure in the table is taken at the saturation rate. The loadgen "
          "publishes over 4 keep-alive HTTP/1.1 connections per API URL (12 in all), one "
          "request in flight on each: a rate R needs a mean round trip below 12 ÷ R (0.6 ms "
          "at 20,000 msg/s), beyond that messages queue in the loadgen and its p99 grows — the "
          "saturation rate is that of the server and this client together.",
          "- W2 /v1/batch: `--batch 100` with a linger long enough to fill every request "
          "(table note); fixed rates only — its p99 holds the batching delay, so there is no "
          "saturation search. W2 room: W2 API at 5,000 msg/s (same pairs, duration, layout "
          "and window) with `--channel room`: every pair on a room of its own without "
          "history, subscribed before `ready`; Redis CPU ÷ delivered messages.",
          "- W1 on a fresh node: one node on its own Redis, nothing served before; RSS 1 s after "
          "ready and 3 s after N idle connections; (after − before) ÷ N.",
          "- W5: the baseline and the slow run each start a fresh cluster; RSS is the sum over "
          "the gateways, sampled every 0.25 s.",
          "- W6: see its section; each backplane (one Redis, Cluster, Cluster with replicas) "
          "in fresh processes, the same `--run-id`, rate and pairs.",
          "- Before → after: `--baseline SPEC` (`make bench BENCH_BASELINE=…`: a binary, a git "
          "revision built by `tools/bench/build-baseline.sh`, or none) runs W1, W1 fresh, "
          "W2 API (with its saturation search), W2 batch, W2 room, W3, W4 and the profile on "
          "the baseline too, each right after the same workload on the current build; the "
          "current load generator drives both.", ""]

