// End-to-end check of the peer servers (loadtest/peers/README.md), with the `ws` package as the
// client, speaking the wire formats of /tmp/specs/loadgen.md ("socketio", "plain", "pusher").
//
//   node loadtest/peers/check-peers.mjs [socketio] [socketio-sharded] [ws] [sockudo] [--redis-port P] [--nodes 3]
//   (default: all three; `make peers-check`)
//
// For each peer it starts a cluster with `python3 -m tools.peers` (one private Redis unless --redis-port),
// connects one user to each node i, publishes MSGS messages to each user through the HTTP API of
// node i+1 (so every message crosses nodes through Redis), and checks that every user got
// exactly its own messages, in order, and nothing else; also that a bad publish is refused.
// Ends with one line `N passed, M failed` and exit status 1 when anything failed.
import { spawn } from "node:child_process";
import { createHash, createHmac } from "node:crypto";
import { createInterface } from "node:readline";
import path from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "..", "..");
const MSGS = 5;
const TIMEOUT_MS = 10_000;
const argv = process.argv.slice(2);
const opt = (name) => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv.splice(i, 2)[1] : undefined; };
const redisPort = opt("redis-port");
const nodes = Number(opt("nodes") ?? 3);
const peers = argv.length ? argv : ["socketio", "ws", "sockudo"];
let passed = 0;
let failed = 0;

function check(name, ok, detail = "") {
    if (ok) passed++;
    else failed++;
    console.log(`${ok ? "ok  " : "FAIL"} ${name}${detail ? ": " + detail : ""}`);
}

function startPeer(peer) {
    const args = ["-m", "tools.peers", peer, "--nodes", String(nodes)];
    if (redisPort) args.push("--redis-port", redisPort);
    // tools/ is a package at the repository root: run it from there.
    const proc = spawn("python3", args, { stdio: ["ignore", "pipe", "inherit"], cwd: ROOT });
    return new Promise((resolve, reject) => {
        const rl = createInterface({ input: proc.stdout });
        rl.once("line", (line) => resolve({ proc, info: JSON.parse(line) }));
        proc.once("exit", (code) => reject(new Error(`tools.peers ${peer} exited with ${code}`)));
    });
}

function stopPeer(proc) {
    return new Promise((resolve) => {
        if (proc.exitCode !== null) return resolve(proc.exitCode);
        proc.once("exit", (code) => resolve(code));
        proc.kill("SIGTERM");
    });
}

// One client per protocol: connect(target, user) resolves once established; deliveries → onMsg.
const clients = {
    "socketio-sharded": (...a) => clients.socketio(...a),
    socketio(target, user, onMsg) {
        const ws = new WebSocket(`ws://${target}/socket.io/?EIO=4&transport=websocket&user=${user}`);
        return new Promise((resolve, reject) => {
            ws.on("error", reject);
            ws.on("message", (buf) => {
                const t = buf.toString();
                if (t.startsWith("0{")) ws.send("40");
                else if (t.startsWith("40")) resolve(ws);
                else if (t === "2") ws.send("3");
                else if (t.startsWith("42")) {
                    const [event, data] = JSON.parse(t.slice(2));
                    if (event === "msg") onMsg(data);
                }
            });
        });
    },
    ws(target, user, onMsg) {
        const ws = new WebSocket(`ws://${target}/?user=${user}`);
        return new Promise((resolve, reject) => {
            ws.on("error", reject);
            let hello = false;
            ws.on("message", (buf) => {
                const v = JSON.parse(buf.toString());
                if (!hello && v && v.type === "hello") { hello = true; resolve(ws); }
                else onMsg(v);
            });
        });
    },
    sockudo(target, user, onMsg, info) {
        const ws = new WebSocket(`ws://${target}/app/${info.pusher.key}?protocol=7&client=loadgen&version=1.0`);
        return new Promise((resolve, reject) => {
            ws.on("error", reject);
            ws.on("message", (buf) => {
                const m = JSON.parse(buf.toString());
                if (m.event === "pusher:connection_established") {
                    ws.send(JSON.stringify({ event: "pusher:subscribe", data: { channel: `user-${user}` } }));
                } else if (m.event === "pusher_internal:subscription_succeeded") resolve(ws);
                else if (m.event === "pusher:ping") ws.send('{"event":"pusher:pong","data":{}}');
                else if (m.event === "pusher:error") reject(new Error(JSON.stringify(m)));
                else if (m.event === "msg" && m.channel === `user-${user}`) onMsg(JSON.parse(m.data));
            });
        });
    },
};

function pusherUrl(api, pusher, body) {
    const params = {
        auth_key: pusher.key,
        auth_timestamp: String(Math.floor(Date.now() / 1000)),
        auth_version: "1.0",
        body_md5: createHash("md5").update(body).digest("hex"),
    };
    const qs = Object.keys(params).sort().map((k) => `${k}=${params[k]}`).join("&");
    const p = `/apps/${pusher.app_id}/events`;
    const sig = createHmac("sha256", pusher.secret).update(`POST\n${p}\n${qs}`).digest("hex");
    return `${api}${p}?${qs}&auth_signature=${sig}`;
}

async function publish(peer, info, api, user, data, { badAuth = false } = {}) {
    if (peer === "sockudo") {
        const body = JSON.stringify({ name: "msg", channels: [`user-${user}`], data: JSON.stringify(data) });
        const pusher = badAuth ? { ...info.pusher, secret: "wrong-secret" } : info.pusher;
        return fetch(pusherUrl(api, pusher, body), { method: "POST", body, headers: { "content-type": "application/json" } });
    }
    const body = badAuth ? "{not json" : JSON.stringify({ to: user, data });
    return fetch(`${api}/publish`, { method: "POST", body, headers: { "content-type": "application/json" } });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const withTimeout = (p, ms, what) =>
    Promise.race([p, sleep(ms).then(() => { throw new Error(`timeout: ${what}`); })]);

async function checkPeer(peer) {
    let started;
    try {
        started = await startPeer(peer);
    } catch (e) {
        check(`${peer}: cluster starts`, false, e.message);
        return;
    }
    const { proc, info } = started;
    check(`${peer}: cluster starts`, info.targets.length === nodes, JSON.stringify(info.targets));
    const run = Math.random().toString(36).slice(2, 8);
    const users = info.targets.map((_, i) => `chk-${run}-${i}`);
    const got = users.map(() => []);
    const sockets = [];
    try {
        for (let i = 0; i < users.length; i++) {
            const connect = clients[peer](info.targets[i], users[i], (d) => got[i].push(d), info);
            sockets.push(await withTimeout(connect, TIMEOUT_MS, `connect ${users[i]}`));
        }
        check(`${peer}: ${users.length} users established (one per node)`, true);
        const statuses = [];
        for (let q = 0; q < MSGS; q++) {
            for (let i = 0; i < users.length; i++) {
                const api = info.api[(i + 1) % info.api.length];
                const res = await publish(peer, info, api, users[i], { s: i, q, t: Date.now() * 1000, p: "x" });
                statuses.push(res.status);
                await res.text();
            }
        }
        check(`${peer}: every publish answered 200`, statuses.every((s) => s === 200), `statuses ${[...new Set(statuses)]}`);
        const deadline = Date.now() + TIMEOUT_MS;
        while (Date.now() < deadline && got.some((g) => g.length < MSGS)) await sleep(20);
        await sleep(300); // catch duplicates or strays
        for (let i = 0; i < users.length; i++) {
            const seqs = got[i].map((d) => (d && d.s === i ? d.q : `stray:${JSON.stringify(d)}`));
            const want = [...Array(MSGS).keys()];
            check(`${peer}: user on node ${i + 1} got its ${MSGS} messages in order via node ${((i + 1) % users.length) + 1}`,
                JSON.stringify(seqs) === JSON.stringify(want), `got ${JSON.stringify(seqs)}`);
        }
        const bad = await publish(peer, info, info.api[0], users[0], { s: 0, q: 99 }, { badAuth: true });
        await bad.text();
        check(`${peer}: a bad publish is refused (4xx)`, bad.status >= 400 && bad.status < 500, `status ${bad.status}`);
        await sleep(300);
        check(`${peer}: a refused publish delivers nothing`, got[0].length === MSGS, `user 0 has ${got[0].length}`);
    } catch (e) {
        check(`${peer}: end to end`, false, e.message);
    } finally {
        for (const ws of sockets) ws.close(1000);
        const code = await stopPeer(proc);
        check(`${peer}: tools.peers stops cleanly on SIGTERM`, code === 0, `exit ${code}`);
    }
}

for (const peer of peers) await checkPeer(peer);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
