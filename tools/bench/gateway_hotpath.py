"""The measurements of crates/gateway/HOTPATH.md: one gateway node on the embedded backplane,
the load generator on the same box, both at `nice -n $PRIO` (default -5).

usage: python3 -m tools.bench.gateway_hotpath GATEWAY LOADGEN OUTDIR MODE [extra gateway args...]
  MODE idle           RSS at 0, then after 5,000 idle connections and STEPS (default 2) × 2,500
                      more (WARMUP=n connects and closes n first; CONC = connect concurrency)
  MODE fanout         10,000 subscribers of feed:bench, 30 messages at 2/s via the API:
                      last-recipient latency, gateway and loadgen CPU per delivery
  MODE fanout-direct  the same with 200 pairs of 1:1 traffic at 400 msg/s alongside
  MODE direct         the 1:1 traffic alone: latency and gateway CPU per message
Writes OUTDIR/result.json (and the loadgen's JSON and logs)."""
import json, os, re, signal, subprocess, sys, time

from ..procstat import cpu_seconds as cpu, rss_bytes as rss

GW, LG, OUT, MODE = sys.argv[1:5]
EXTRA = sys.argv[5:]
os.makedirs(OUT, exist_ok=True)
SECRET = "dev-secret-change-me-0123456789abcdef"

def start_gw():
    env = dict(os.environ, SWITCHBOARD_JWT_SECRET=SECRET, SWITCHBOARD_API_KEY="dev-api-key",
               SWITCHBOARD_LOG_LEVEL="warn")
    p = subprocess.Popen(["nice", "-n", os.environ.get("PRIO", "-5"), GW, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                          "--rate-limit", "0", "--max-connections", "200000", "--namespaces", "feed",
                          "--heartbeat-ms", "25000"] + EXTRA,
                         stdout=subprocess.PIPE, stderr=open(f"{OUT}/gw.log", "w"), env=env, text=True)
    line = p.stdout.readline()
    m = re.search(r"public=(\S+) internal=(\S+)", line)
    return p, m.group(1), m.group(2)

def lg(args, pub, api, name):
    cmd = ["nice", "-n", os.environ.get("PRIO", "-5"), LG, "--targets", pub, "--api", "http://" + api, "--api-key", "dev-api-key",
           "--jwt-secret", SECRET, "--quiet", "--json", f"{OUT}/{name}.json"] + [str(a) for a in args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(f"{OUT}/{name}.log", "w"), text=True)

def wait_ready(p):
    for l in p.stdout:
        if l.startswith("ready"):
            return l.strip()
    raise RuntimeError("no ready line")

gw, pub, api = start_gw()
time.sleep(1.0)
res = {"gateway": GW, "extra": EXTRA}
try:
    if MODE == "idle":
        if os.environ.get("WARMUP"):
            w = lg(["idle", "--connections", int(os.environ["WARMUP"]), "--connect-rate", 0, "--concurrency", 256,
                    "--hold-seconds", 1], pub, api, "warm")
            w.wait(120); time.sleep(4)
            res["warm_rss"] = rss(gw.pid)
        pts = [(0, rss(gw.pid))]
        held = []
        for i, step in enumerate([5000] + [2500] * int(os.environ.get("STEPS", "2"))):
            p = lg(["idle", "--connections", step, "--connect-rate", 0, "--concurrency", int(os.environ.get("CONC", "256")),
                    "--hold-seconds", 3600], pub, api, f"idle{i}")
            held.append(p); wait_ready(p); time.sleep(4)
            if os.environ.get("SETTLE2"):
                r4 = rss(gw.pid); time.sleep(float(os.environ["SETTLE2"]))
                print("rss after 4 s", r4, "after more", rss(gw.pid), flush=True)
            pts.append((pts[-1][0] + step, rss(gw.pid)))
            print("idle", pts[-1], flush=True)
        xs, ys = [x for x, _ in pts], [y for _, y in pts]
        n = len(xs); mx, my = sum(xs)/n, sum(ys)/n
        slope = sum((x-mx)*(y-my) for x, y in zip(xs, ys)) / sum((x-mx)**2 for x in xs)
        res.update(points=pts, slope_B=slope, per_conn_5000_B=(pts[1][1]-pts[0][1])/5000)
        for p in held: p.send_signal(signal.SIGTERM)
        for p in held: p.wait(60)
    elif MODE in ("fanout", "fanout-direct"):
        f = lg(["fanout", "--subscribers", 10000, "--channel", "feed:bench", "--messages", 30,
                "--rate", 2, "--via", "api", "--payload-bytes", 64, "--settle-seconds", 3], pub, api, "fanout")
        wait_ready(f)
        open(f"{OUT}/ready.pid", "w").write(str(gw.pid))
        c0, t0 = cpu(gw.pid), time.time()
        l0 = cpu(f.pid)
        d = None
        if MODE == "fanout-direct":
            d = lg(["--user-prefix", "dd", "direct", "--pairs", 200, "--rate", 400, "--duration", 14,
                    "--via", "api", "--settle-seconds", 3], pub, api, "direct")
        l1 = l0
        while f.poll() is None:
            try: l1 = cpu(f.pid)
            except Exception: pass
            time.sleep(0.2)
        c1, t1 = cpu(gw.pid), time.time()
        if d: d.wait(120)
        r = json.load(open(f"{OUT}/fanout.json"))
        res["fanout"] = {"last_recipient_us": r["fanout"]["last_recipient_us"], "latency_us": r["latency_us"],
                         "delivered": r["messages"]["delivered"], "lost": r["messages"]["lost"],
                         "gw_cpu_s": round(c1 - c0, 3), "wall_s": round(t1 - t0, 2), "loadgen_cpu_s": round(l1 - l0, 3),
                         "gw_cpu_us_per_delivery": round((c1 - c0) * 1e6 / max(1, r["messages"]["delivered"]), 2)}
        if d:
            r = json.load(open(f"{OUT}/direct.json"))
            res["direct"] = {"latency_us": r["latency_us"], "delivered": r["messages"]["delivered"], "lost": r["messages"]["lost"]}
    elif MODE == "direct":
        d = lg(["--user-prefix", "dd", "direct", "--pairs", 200, "--rate", 400, "--duration", 14,
                "--via", "api", "--settle-seconds", 3], pub, api, "direct")
        wait_ready(d)
        c0 = cpu(gw.pid)
        d.wait(120)
        c1 = cpu(gw.pid)
        r = json.load(open(f"{OUT}/direct.json"))
        res["direct"] = {"latency_us": r["latency_us"], "delivered": r["messages"]["delivered"], "lost": r["messages"]["lost"],
                         "gw_cpu_s": round(c1 - c0, 3),
                         "gw_cpu_us_per_delivery": round((c1 - c0) * 1e6 / max(1, r["messages"]["delivered"]), 2)}
finally:
    gw.send_signal(signal.SIGTERM)
    try: gw.wait(30)
    except Exception: gw.kill()
json.dump(res, open(f"{OUT}/result.json", "w"), indent=1)
print(json.dumps(res))
