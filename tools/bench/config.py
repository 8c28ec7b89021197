"""Sizes of every workload for the full run (`make bench`) and the quick one (BENCH_QUICK=1).
Used by bench.py; the report prints the sizes it ran with.

W2 (`direct`): rates, duration and pairs of the fixed-rate runs, then the saturation search
(see direct.py). W2_batch: `/v1/batch` with `batch` messages per request (the linger is long
enough for the batch to fill: direct.batch_linger_ms). room: W2 API at 5,000 msg/s with the
same pairs and duration, every pair on a room of its own without history (`direct --channel
room --via api`, room.py).
W6: the same W2 run on one Redis, on a Redis Cluster of 3 primaries and (replicas: True) on
3 primaries × 1 replica (w6.py). profile: one W2 run with `perf record` attached
(perfprof.py).
"""

# The room run is W2 API's run at this rate, in rooms (hotpath.py: "Redis CPU µs per room
# message" next to "per user-channel message").
ROOM_RATE = 5000


def room(w2, idle_s):
    """W2 room: W2 API's pairs and duration at ROOM_RATE (one of W2 API's fixed rates)."""
    if ROOM_RATE not in w2["fixed_rates"]:
        raise ValueError(f"W2 API has no fixed rate {ROOM_RATE} to compare the room run with")
    return {"rate": ROOM_RATE, "duration": w2["duration"], "pairs": w2["pairs"],
            "idle_s": idle_s}


W2_FULL = {"fixed_rates": [2000, 5000], "duration": 10, "pairs": 300, "search_start": 8000,
           "search_duration": 6, "search_max": 400000, "search_budget_s": 150}
W2_QUICK = {"fixed_rates": [2000, 5000], "duration": 4, "pairs": 100, "search_start": 8000,
            "search_duration": 3, "search_max": 400000, "search_budget_s": 25}

FULL = {
    "w1_steps": [0, 5000, 10000, 15000],
    "w1_fresh": 5000,
    "w2": W2_FULL,
    "w2_ws": {"fixed_rates": [2000], "duration": 10, "pairs": 300, "search_start": 8000,
              "search_duration": 6, "search_max": 400000, "search_budget_s": 60},
    "w2_batch": {"fixed_rates": [5000, 10000], "duration": 10, "pairs": 300, "batch": 100},
    "room": room(W2_FULL, idle_s=3),
    "w3": {"subscribers": 10000, "messages": 30, "rate": 2},
    "w4": {"connections": 15000, "concurrency": 256},
    "w5": {"subscribers": 100, "slow": 20, "messages": 3000, "rate": 300, "payload": 4096},
    "w6": {"rate": 5000, "duration": 10, "pairs": 1000, "idle_s": 5, "replicas": True},
    "profile": {"rate": 5000, "duration": 10, "pairs": 300, "seconds": 8},
    "peers": {"w1_steps": [0, 5000, 10000],
              "w2": {"fixed_rates": [2000, 5000], "duration": 10, "pairs": 300}},
}
QUICK = {
    "w1_steps": [0, 1000, 2000],
    "w1_fresh": 5000,
    "w2": W2_QUICK,
    "w2_ws": {"fixed_rates": [2000], "duration": 4, "pairs": 100, "search_start": 4000,
              "search_duration": 3, "search_max": 400000, "search_budget_s": 10},
    "w2_batch": {"fixed_rates": [5000], "duration": 4, "pairs": 100, "batch": 100},
    "room": room(W2_QUICK, idle_s=2),
    "w3": {"subscribers": 2000, "messages": 10, "rate": 2},
    "w4": {"connections": 3000, "concurrency": 128},
    "w5": {"subscribers": 50, "slow": 5, "messages": 2500, "rate": 500, "payload": 4096},
    "w6": {"rate": 2000, "duration": 4, "pairs": 1000, "idle_s": 2, "replicas": True},
    "profile": {"rate": 5000, "duration": 6, "pairs": 100, "seconds": 4},
    "peers": {"w1_steps": [0, 1000],
              "w2": {"fixed_rates": [2000, 5000], "duration": 3, "pairs": 100}},
}
# W5 payloads are 4 KiB: on loopback the kernel lets a non-reading socket's send buffer grow
# to a few MiB (MSS 64 KiB), which has to fill before the gateway's own queue (1024 frames /
# 4 MiB) does; 512 B × 1500 messages never reached it.

# What runs against the baseline binary (--baseline): the workloads behind the hot-path
# figures (hotpath.py), each right after the same workload on the current build.
BASELINE_WORKLOADS = ("W1", "W1_fresh", "W2_api", "W2_batch", "W2_room", "W3", "W4")
