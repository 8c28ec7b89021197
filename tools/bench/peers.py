"""Side by side: W1 (memory per idle connection) and W2 (1:1 through the HTTP API at fixed
rates: latency and messages per server CPU-second) against the peers of loadtest/peers
(Socket.IO + redis-adapter, ws + ioredis, Sockudo), each in a fresh 3-node peer cluster on
its own Redis, same box, same run, same loadgen. A peer that is not installed/built or does
not start is skipped with the reason. Used by bench.py.
"""

import os
import traceback

from . import direct
from . import idle
from .sut import Peer, RUN_PEER


def run(ctx, peer, cfg):
    out = {"peer": peer, "label": None, "w1": None, "w2": None, "skipped": None, "errors": []}
    if not os.path.exists(RUN_PEER):
        out["skipped"] = "tools/peers.py does not exist"
        return out
    # W1 in its own peer cluster; a failure to start the peer at all = skipped.
    try:
        with Peer(peer, ctx.outdir) as sut:
            out["label"] = sut.label
            out["describe"] = sut.describe()
            ctx.log(f"peer {peer}: W1 idle")
            try:
                out["w1"] = idle.run(ctx, sut, cfg["w1_steps"])
            except Exception as e:  # noqa: BLE001
                out["errors"].append(f"W1: {type(e).__name__}: {e}")
                ctx.log(f"peer {peer}: W1 failed: {e}")
    except Exception as e:  # noqa: BLE001
        out["skipped"] = f"could not start: {type(e).__name__}: {e}"
        ctx.log(f"peer {peer} skipped: {out['skipped']}")
        out["trace"] = traceback.format_exc()
        return out
    try:
        with Peer(peer, ctx.outdir) as sut:
            ctx.log(f"peer {peer}: W2 api fixed rates {cfg['w2']['fixed_rates']}")
            out["w2"] = direct.run(ctx, sut, cfg["w2"], via="api", search=False)
    except Exception as e:  # noqa: BLE001
        out["errors"].append(f"W2: {type(e).__name__}: {e}")
        ctx.log(f"peer {peer}: W2 failed: {e}")
    return out
