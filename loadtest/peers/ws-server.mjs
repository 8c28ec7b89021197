// Plain `ws` + `ioredis` peer for the Switchboard side-by-side benchmark (wire format "plain" of
// /tmp/specs/loadgen.md, kept in loadtest/peers/README.md).
//
//   node loadtest/peers/ws-server.mjs --port 0 --redis-port 6379 [--redis-host 127.0.0.1] [--host 127.0.0.1]
//   (env PORT, HOST, REDIS_PORT, REDIS_HOST work too). Prints `listening port=<p>` once listening.
//
// - ws://HOST:PORT/?user=<id>: the server keeps a local map user → sockets. When the first socket
//   of a user connects it SUBSCRIBEs to Redis channel "user:<id>" (on the subscriber connection)
//   and sends {"type":"hello"} once the subscription is confirmed; when the last one goes it
//   UNSUBSCRIBEs.
// - POST /publish {"to":"<id>","data":<any JSON>} → PUBLISH "user:<to>" JSON.stringify(data) →
//   200 {"ok":true}. Every node subscribed to that channel sends the payload text as one text
//   frame to each local socket of the user.
// - Heartbeat like a production server: a WebSocket ping every 25 s; a socket that did not answer
//   the previous ping with a pong is terminated.
import http from "node:http";
import { WebSocketServer } from "ws";
import { Redis } from "ioredis";

function arg(name, envName, dflt) {
    const i = process.argv.indexOf(`--${name}`);
    if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
    return process.env[envName] ?? dflt;
}

const port = Number(arg("port", "PORT", "0"));
const host = arg("host", "HOST", "127.0.0.1");
const redisHost = arg("redis-host", "REDIS_HOST", "127.0.0.1");
const redisPort = Number(arg("redis-port", "REDIS_PORT", "6379"));
const PING_MS = 25_000;
const MAX_BODY = 1 << 20;

const pub = new Redis({ host: redisHost, port: redisPort, lazyConnect: true });
const sub = new Redis({ host: redisHost, port: redisPort, lazyConnect: true });
await Promise.all([pub.connect(), sub.connect()]);

// user id → { sockets: Set<WebSocket>, subscribed: Promise }
const users = new Map();

sub.on("message", (channel, message) => {
    const entry = users.get(channel.slice(5)); // strip "user:"
    if (!entry) return;
    for (const ws of entry.sockets) ws.send(message);
});

function attach(user, ws) {
    let entry = users.get(user);
    if (!entry) {
        entry = { sockets: new Set(), subscribed: sub.subscribe(`user:${user}`) };
        users.set(user, entry);
    }
    entry.sockets.add(ws);
    return entry.subscribed;
}

function detach(user, ws) {
    const entry = users.get(user);
    if (!entry || !entry.sockets.delete(ws) || entry.sockets.size > 0) return;
    users.delete(user);
    // Commands on one ioredis connection run in order, so a later SUBSCRIBE of the same user
    // (a reconnect) is applied after this UNSUBSCRIBE.
    sub.unsubscribe(`user:${user}`).catch(() => {});
}

const httpServer = http.createServer();
httpServer.keepAliveTimeout = 65_000;
httpServer.headersTimeout = 66_000;
const wss = new WebSocketServer({ server: httpServer, perMessageDeflate: false });

wss.on("connection", (ws, req) => {
    const user = new URL(req.url, "http://x").searchParams.get("user");
    if (!user) {
        ws.close(1008, "missing user");
        return;
    }
    ws.isAlive = true;
    ws.on("pong", () => { ws.isAlive = true; });
    ws.on("error", () => {});
    ws.on("close", () => detach(user, ws));
    attach(user, ws).then(
        () => { if (ws.readyState === ws.OPEN) ws.send('{"type":"hello"}'); },
        () => ws.close(1011, "subscribe failed"),
    );
});

const heartbeat = setInterval(() => {
    for (const ws of wss.clients) {
        if (!ws.isAlive) {
            ws.terminate();
            continue;
        }
        ws.isAlive = false;
        ws.ping();
    }
}, PING_MS);

function reply(res, status, body) {
    const text = JSON.stringify(body);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
}

httpServer.on("request", (req, res) => {
    if (req.method === "GET" && req.url === "/healthz") return reply(res, 200, { ok: true });
    if (req.method !== "POST" || req.url !== "/publish") return reply(res, 404, { ok: false, error: "not found" });
    const chunks = [];
    let size = 0;
    req.on("data", (c) => {
        size += c.length;
        if (size > MAX_BODY) req.destroy();
        else chunks.push(c);
    });
    req.on("end", () => {
        let msg;
        try {
            msg = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        } catch {
            return reply(res, 400, { ok: false, error: "invalid JSON" });
        }
        if (msg === null || typeof msg !== "object" || (typeof msg.to !== "string" && typeof msg.to !== "number")
            || !("data" in msg)) {
            return reply(res, 400, { ok: false, error: "want {\"to\",\"data\"}" });
        }
        pub.publish(`user:${msg.to}`, JSON.stringify(msg.data)).then(
            () => reply(res, 200, { ok: true }),
            (e) => reply(res, 503, { ok: false, error: String(e) }),
        );
    });
});

httpServer.listen(port, host, () => {
    console.log(`listening port=${httpServer.address().port}`);
});

function shutdown() {
    clearInterval(heartbeat);
    for (const ws of wss.clients) ws.close(1001, "shutting down");
    httpServer.close();
    pub.disconnect();
    sub.disconnect();
    setTimeout(() => process.exit(0), 200).unref();
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
