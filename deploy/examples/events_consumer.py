#!/usr/bin/env python3
"""Reads Switchboard's connection events with a Redis consumer group (at-least-once).

    pip install redis
    python deploy/examples/events_consumer.py --redis redis://127.0.0.1:6390/0

Every connect/disconnect (including synthetic disconnects of a crashed node's users,
`synthetic=1`, `reason=node_lost`) is handled, then acknowledged. Entries a crashed
worker read but never acknowledged are claimed again after --idle-ms.
"""
import argparse
import socket

import redis


def handle(entry_id, fields):
    # Replace with your logic (update a presence DB, notify friends, bill minutes …).
    # Must be idempotent: delivery is at-least-once.
    print(entry_id, fields.get("type"), fields.get("user"), fields.get("conn"),
          fields.get("node"), fields.get("reason", ""), fields.get("synthetic", ""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis", default="redis://127.0.0.1:6390/0")
    ap.add_argument("--stream", default="switchboard:events")
    ap.add_argument("--group", default="presence-svc")
    ap.add_argument("--consumer", default=socket.gethostname())
    ap.add_argument("--idle-ms", type=int, default=60_000)
    args = ap.parse_args()

    r = redis.Redis.from_url(args.redis, decode_responses=True)
    try:
        r.xgroup_create(args.stream, args.group, id="0", mkstream=True)
    except redis.ResponseError as e:  # BUSYGROUP: the group exists
        if "BUSYGROUP" not in str(e):
            raise

    while True:
        # Entries another worker took but never acknowledged (it crashed).
        _, claimed, _ = r.xautoclaim(args.stream, args.group, args.consumer,
                                     min_idle_time=args.idle_ms, start_id="0-0", count=100)
        batches = [(args.stream, claimed)] if claimed else []
        batches += r.xreadgroup(args.group, args.consumer, {args.stream: ">"},
                                count=100, block=5000) or []
        for _, entries in batches:
            for entry_id, fields in entries:
                handle(entry_id, fields)
                r.xack(args.stream, args.group, entry_id)


if __name__ == "__main__":
    main()
