// Socket.IO 4 peer for the Switchboard side-by-side benchmark (wire format "socketio" of
// /tmp/specs/loadgen.md, kept in loadtest/peers/README.md).
//
//   node loadtest/peers/socketio-server.mjs --port 0 --redis-port 6379 [--redis-host 127.0.0.1] [--host 127.0.0.1]
//   [--adapter classic|sharded]   (env PORT, HOST, REDIS_PORT, REDIS_HOST, SIO_ADAPTER work too).
//   Prints `listening port=<p>` once listening.
//
// - WebSocket transport only: ws://HOST:PORT/socket.io/?EIO=4&transport=websocket&user=<id>
//   Each socket joins room "user:<id>" (id from the handshake query).
// - POST /publish {"to":"<id>","data":<any JSON>} on the same port runs
//   io.to("user:"+to).emit("msg", data) → 200 {"ok":true}. The emit goes through
//   @socket.io/redis-adapter (Redis PUBLISH; every node of the cluster receives it and delivers to
//   its local members of the room), so a user on another node gets it. Default: the classic
//   createAdapter (PUBLISH on one channel family that every node pattern-subscribes, each node
//   filters by room). --adapter sharded: createShardedAdapter with subscriptionMode "dynamic"
//   (SPUBLISH per room; only nodes with members of the room are subscribed).
// - Several processes on different ports sharing one Redis form the cluster.
import http from "node:http";
import { Server } from "socket.io";
import { createAdapter, createShardedAdapter } from "@socket.io/redis-adapter";
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
const adapterKind = arg("adapter", "SIO_ADAPTER", "classic");
const MAX_BODY = 1 << 20;
if (!["classic", "sharded"].includes(adapterKind)) throw new Error(`--adapter classic|sharded, not ${adapterKind}`);

const pubClient = new Redis({ host: redisHost, port: redisPort, lazyConnect: true });
const subClient = pubClient.duplicate();
await Promise.all([pubClient.connect(), subClient.connect()]);

const httpServer = http.createServer();
httpServer.keepAliveTimeout = 65_000;
httpServer.headersTimeout = 66_000;

const io = new Server(httpServer, {
    transports: ["websocket"],
    adapter: adapterKind === "sharded"
        // Redis 7 sharded pub/sub, one channel per room with members on this node ("dynamic").
        ? createShardedAdapter(pubClient, subClient, { subscriptionMode: "dynamic" })
        : createAdapter(pubClient, subClient),
    // Socket.IO defaults (heartbeat every 25 s, 20 s timeout), stated for clarity.
    pingInterval: 25_000,
    pingTimeout: 20_000,
    serveClient: false,
});

io.on("connection", (socket) => {
    const user = socket.handshake.query.user;
    if (typeof user !== "string" || user === "") {
        socket.disconnect(true);
        return;
    }
    socket.join(`user:${user}`);
});

function reply(res, status, body) {
    const text = JSON.stringify(body);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
}

// Socket.IO's engine handles /socket.io/ itself and hands every other request to this listener.
httpServer.on("request", (req, res) => {
    if (req.url.startsWith("/socket.io/")) return;
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
        io.to(`user:${msg.to}`).emit("msg", msg.data);
        reply(res, 200, { ok: true });
    });
});

httpServer.listen(port, host, () => {
    console.log(`listening port=${httpServer.address().port}`);
});

function shutdown() {
    io.close();
    pubClient.disconnect();
    subClient.disconnect();
    setTimeout(() => process.exit(0), 200).unref();
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
