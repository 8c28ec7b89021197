"""Reads every personal-channel stream in the cluster's Redis after a run and checks the order
in which each recipient's messages were STORED (offset order) against their sender's sequence.

Why: the loadgen counts `out_of_order` at the recipient. The protocol promises delivery in
offset order per channel and connection, not that a sender's publishes keep their order
across its own reconnect. Comparing the two tells them apart:
  stored inversions  = a publish sent on the old (draining) connection was stored after the
                       sender's newer publishes on its new connection (publish side);
  out_of_order - stored inversions > 0 = the gateway delivered out of offset order (a bug).

Streams: `<prefix>s:user:<id>`, entry id `<offset>-0`, fields `m` (the protobuf message, whose
data holds the loadgen's JSON payload `{"s":…,"q":…,…}` verbatim) and `t` (ms stored).
"""

import re

from ..resp import Redis

Q = re.compile(rb'"q":(\d+)')  # key order may change if the gateway re-encodes the JSON


def stored_order(port, prefix="sb:", examples=10):
    """Counts, over every `user:` stream, entries whose sender sequence is lower than one
    stored before them (the first time), like the loadgen counts out_of_order."""
    r = Redis(port)
    try:
        keys, cursor = [], b"0"
        while True:
            cursor, batch = r.cmd("SCAN", cursor, "MATCH", f"{prefix}s:user:*", "COUNT", 1000)
            keys.extend(batch)
            if cursor == b"0":
                break
        out = {"streams": len(keys), "entries": 0, "inversions": 0, "examples": []}
        for key in keys:
            entries = r.cmd("XRANGE", key, "-", "+") or []
            out["entries"] += len(entries)
            seen, top, top_t = set(), -1, None
            for entry_id, fields in entries:
                f = dict(zip(fields[::2], fields[1::2]))
                m = Q.search(f.get(b"m", b""))
                if not m:
                    continue
                q = int(m.group(1))
                t = int(f.get(b"t", b"0") or 0)
                if q < top and q not in seen:
                    out["inversions"] += 1
                    if len(out["examples"]) < examples:
                        out["examples"].append({
                            "stream": key.decode(), "offset": entry_id.decode().split("-")[0],
                            "seq": q, "after_seq": top,
                            "stored_ms_after_it": (t - top_t) if top_t else None})
                seen.add(q)
                if q > top:
                    top, top_t = q, t
        return out
    finally:
        r.close()
