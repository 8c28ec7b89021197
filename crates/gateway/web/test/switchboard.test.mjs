// Unit tests for the Switchboard client: a fake WebSocket and node:test's fake timers, no network.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Switchboard, SwitchboardError, tokenExpiry } from '../switchboard.js';

const T0 = 1_700_000_000_000; // fake clock start (ms)

/** A fresh fake WebSocket class per test; the test plays the server. */
function fakeWebSocket() {
  class FakeWS {
    static all = [];
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      this.sent = [];
      this.closedByClient = null;
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      FakeWS.all.push(this);
    }
    static get last() {
      return FakeWS.all[FakeWS.all.length - 1];
    }
    send(text) {
      if (this.readyState !== 1) throw new Error('send on a socket that is not open');
      this.sent.push(JSON.parse(text));
    }
    close(code = 1000, reason = '') {
      this.closedByClient = { code, reason };
      this.readyState = 3;
    }
    // ---- the server side ----
    accept() {
      this.readyState = 1;
      this.onopen?.({});
    }
    recv(frame) {
      this.onmessage?.({ data: JSON.stringify(frame) });
    }
    welcome(extra = {}) {
      if (this.readyState === 0) this.accept();
      this.recv({
        type: 'welcome', conn_id: `c-${FakeWS.all.indexOf(this) + 1}`, user: 'alice', node: 'gw-1',
        heartbeat_ms: 25000, channel: 'user:alice', epoch: 'e1', offset: 0, ...extra,
      });
    }
    drop(code = 1006, reason = '') {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
    frames(type) {
      return this.sent.filter((f) => f.type === type);
    }
    lastFrame(type) {
      const f = this.frames(type);
      return f[f.length - 1];
    }
    reply(request, fields = {}) {
      this.recv({ type: 'reply', id: request.id, ok: true, ...fields });
    }
    get params() {
      return new URL(this.url).searchParams;
    }
  }
  return FakeWS;
}

/** Lets promise callbacks (the async token callback, awaits) run; setImmediate is not faked. */
const flush = () => new Promise((resolve) => setImmediate(resolve));

function b64url(obj) {
  return Buffer.from(JSON.stringify(obj)).toString('base64url');
}
function jwt(claims) {
  return `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url(claims)}.sig`;
}

/** A client on fake timers, with its fake socket class, a token counter and an event log. */
function setup(t, options = {}) {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: T0 });
  const WS = fakeWebSocket();
  const tokens = [];
  const tokenFn =
    options.token ??
    (async () => {
      const tok = jwt({ sub: 'alice', exp: Math.floor(Date.now() / 1000) + 3600, n: tokens.length + 1 });
      tokens.push(tok);
      return tok;
    });
  const sb = new Switchboard({ url: 'ws://gw/ws', random: () => 0, ...options, token: tokenFn, WebSocket: WS });
  const log = { state: [], welcome: [], message: [], presence: [], resync: [], error: [], goaway: [], reconnect: [] };
  for (const ev of Object.keys(log)) sb.on(ev, (v) => log[ev].push(v));
  const tick = async (ms) => {
    t.mock.timers.tick(ms);
    await flush();
  };
  return { sb, WS, tokens, log, tick };
}

/** Connects and answers the first welcome. */
async function connected(t, options, welcome) {
  const ctx = setup(t, options);
  const p = ctx.sb.connect();
  await flush();
  ctx.WS.last.welcome(welcome);
  await p;
  return ctx;
}

const msg = (channel, epoch, offset, data = { n: offset }) => ({
  type: 'message', channel, from: 'bob', id: `m-${epoch}-${offset}`, epoch, offset, ts: T0, data,
});
const offsets = (log, channel) => log.message.filter((m) => m.channel === channel).map((m) => `${m.epoch}:${m.offset}`);

// ---------------------------------------------------------------------------------------

test('connect: URL-encoded token, JSON subprotocol, resolves on the first welcome', async (t) => {
  const token = 'a+b/c=d.e f';
  const { sb, WS, log } = setup(t, { token: () => token });
  const p = sb.connect();
  assert.equal(sb.state, 'connecting');
  await flush();
  assert.equal(WS.all.length, 1);
  const ws = WS.last;
  assert.equal(ws.url, `ws://gw/ws?token=${encodeURIComponent(token)}`);
  assert.equal(ws.params.get('token'), token);
  assert.equal(ws.params.get('since'), null, 'no since on a first connect');
  assert.deepEqual(ws.protocols, ['switchboard.v1.json']);
  ws.welcome({ conn_id: 'c-9', node: 'gw-2', epoch: 'e1', offset: 17 });
  const welcome = await p;
  assert.equal(welcome.conn_id, 'c-9');
  assert.equal(sb.user, 'alice');
  assert.equal(sb.connId, 'c-9');
  assert.equal(sb.node, 'gw-2');
  assert.deepEqual(log.state, ['connecting', 'open']);
  assert.equal(log.welcome.length, 1);
  assert.equal(await sb.connect(), welcome, 'connect() again resolves the same welcome');
});

test('personal channel: dedupe and offset order across a reconnect with since', async (t) => {
  const { WS, log, tick } = await connected(t, {}, { epoch: 'e1', offset: 3 });
  const ws1 = WS.last;
  // The inbox replay after the welcome, with a duplicate.
  for (const o of [1, 2, 2, 3]) ws1.recv(msg('user:alice', 'e1', o));
  assert.deepEqual(offsets(log, 'user:alice'), ['e1:1', 'e1:2', 'e1:3']);

  ws1.drop(1006);
  await tick(0); // backoff delay is 0 with random() = 0
  assert.equal(WS.all.length, 2);
  const ws2 = WS.last;
  assert.equal(ws2.params.get('since'), 'e1:3');
  assert.ok(ws2.url.includes('&since=e1:3'));
  ws2.welcome({ epoch: 'e1', offset: 5, recovered: true });
  assert.equal(log.resync.length, 0);
  // Replay overlapping what was already delivered, then live.
  for (const o of [2, 3, 4, 5, 5, 4]) ws2.recv(msg('user:alice', 'e1', o));
  assert.deepEqual(offsets(log, 'user:alice'), ['e1:1', 'e1:2', 'e1:3', 'e1:4', 'e1:5']);

  // A new epoch is adopted: its offsets start over.
  ws2.recv(msg('user:alice', 'e2', 1));
  ws2.recv(msg('user:alice', 'e2', 1));
  ws2.recv(msg('user:alice', 'e2', 2));
  assert.deepEqual(offsets(log, 'user:alice').slice(5), ['e2:1', 'e2:2']);

  ws2.drop(1001);
  await tick(0);
  assert.equal(WS.last.params.get('since'), 'e2:2');
});

test('rooms: re-subscribed after a reconnect with since; replayed duplicates dropped', async (t) => {
  const { sb, WS, log, tick } = setup(t);
  const subscribed = sb.subscribe('room:lobby'); // before connect: waits for the connection
  sb.connect();
  await flush();
  const ws1 = WS.last;
  assert.equal(ws1.sent.length, 0);
  ws1.welcome();
  const sub1 = ws1.lastFrame('subscribe');
  assert.equal(sub1.channel, 'room:lobby');
  assert.equal(typeof sub1.id, 'number');
  assert.equal(sub1.since, undefined, 'a first subscribe has no since');
  ws1.reply(sub1, { epoch: 'r1', offset: 10 });
  const reply = await subscribed;
  assert.equal(reply.ok, true);
  assert.equal(reply.offset, 10);

  ws1.recv(msg('room:lobby', 'r1', 10)); // not after the subscribe position: dropped
  ws1.recv(msg('room:lobby', 'r1', 11));
  ws1.recv(msg('room:lobby', 'r1', 12));
  assert.deepEqual(offsets(log, 'room:lobby'), ['r1:11', 'r1:12']);

  ws1.drop(1006);
  await tick(0);
  const ws2 = WS.last;
  assert.notEqual(ws2, ws1);
  ws2.welcome({ recovered: true });
  const sub2 = ws2.lastFrame('subscribe');
  assert.equal(sub2.channel, 'room:lobby');
  assert.deepEqual(sub2.since, { epoch: 'r1', offset: 12 });
  assert.notEqual(sub2.id, sub1.id);
  ws2.reply(sub2, { epoch: 'r1', offset: 14, recovered: true });
  for (const o of [12, 13, 14, 13]) ws2.recv(msg('room:lobby', 'r1', o));
  assert.deepEqual(offsets(log, 'room:lobby'), ['r1:11', 'r1:12', 'r1:13', 'r1:14']);
  assert.equal(log.resync.length, 0);
  assert.equal((await sb.subscribe('room:lobby')).ok, true, 'subscribing again resolves the current reply');
  assert.equal(ws2.frames('subscribe').length, 1, '... without a second subscribe frame');
});

test('recovered:false: resync events for the personal channel and a room, positions reset', async (t) => {
  const { sb, WS, log, tick } = await connected(t, {}, { epoch: 'e1', offset: 5 });
  const ws1 = WS.last;
  const sub = sb.subscribe('room:lobby');
  ws1.reply(ws1.lastFrame('subscribe'), { epoch: 'r1', offset: 0 });
  await sub;
  for (const o of [4, 5]) ws1.recv(msg('user:alice', 'e1', o));
  ws1.recv(msg('room:lobby', 'r1', 1));

  ws1.drop(1012);
  await tick(0);
  const ws2 = WS.last;
  assert.equal(ws2.params.get('since'), 'e1:5');
  ws2.welcome({ epoch: 'e2', offset: 7, recovered: false });
  assert.deepEqual(log.resync, [{ channel: 'user:alice', epoch: 'e2', offset: 7 }]);
  const sub2 = ws2.lastFrame('subscribe');
  assert.deepEqual(sub2.since, { epoch: 'r1', offset: 1 });
  ws2.reply(sub2, { epoch: 'r9', offset: 3, recovered: false });
  assert.deepEqual(log.resync[1], { channel: 'room:lobby', epoch: 'r9', offset: 3 });

  // Positions are now the reply's: older offsets of the new epoch are not delivered.
  ws2.recv(msg('user:alice', 'e2', 7));
  ws2.recv(msg('user:alice', 'e2', 8));
  ws2.recv(msg('room:lobby', 'r9', 3));
  ws2.recv(msg('room:lobby', 'r9', 4));
  assert.deepEqual(offsets(log, 'user:alice'), ['e1:4', 'e1:5', 'e2:8']);
  assert.deepEqual(offsets(log, 'room:lobby'), ['r1:1', 'r9:4']);

  ws2.drop(1006);
  await tick(0);
  const ws3 = WS.last;
  assert.equal(ws3.params.get('since'), 'e2:8');
  ws3.welcome({ epoch: 'e2', offset: 8, recovered: true });
  assert.deepEqual(ws3.lastFrame('subscribe').since, { epoch: 'r9', offset: 4 });
  assert.equal(log.resync.length, 2);
});

test('goaway: waits reconnect_ms, then connects to the next URL (server closes first)', async (t) => {
  const { WS, log, tick } = await connected(t, { urls: ['ws://a/ws', 'ws://b/ws'], url: undefined });
  const ws1 = WS.last;
  assert.ok(ws1.url.startsWith('ws://a/ws?'));
  ws1.recv(msg('user:alice', 'e1', 1));
  ws1.recv({ type: 'goaway', reason: 'draining', reconnect_ms: 1500 });
  assert.equal(log.goaway.length, 1);
  ws1.drop(1012, 'draining');
  assert.equal(log.state.at(-1), 'connecting');
  await tick(1499);
  assert.equal(WS.all.length, 1, 'nothing before reconnect_ms');
  await tick(1);
  assert.equal(WS.all.length, 2);
  const ws2 = WS.last;
  assert.ok(ws2.url.startsWith('ws://b/ws?'), ws2.url);
  assert.equal(ws2.params.get('since'), 'e1:1');
  assert.equal(log.error.length, 0, 'a drain is not an error');
  ws2.welcome({ recovered: true });

  // The next goaway moves on again (back to a); the client closes the old socket itself
  // when the server has not closed it by then.
  ws2.recv({ type: 'goaway', reason: 'draining', reconnect_ms: 200 });
  await tick(199);
  assert.equal(ws2.closedByClient, null);
  await tick(1);
  assert.equal(ws2.closedByClient?.code, 1000);
  assert.equal(WS.all.length, 3);
  assert.ok(WS.last.url.startsWith('ws://a/ws?'));
  ws2.drop(1000); // late close event of the replaced socket: ignored
  await tick(60_000);
  assert.equal(WS.all.length, 3);
});

test('backoff: full-jitter delays within [0, cap], caps grow to maxMs, reset after a welcome; URLs rotate', async (t) => {
  const values = [];
  let next = () => 0.999999;
  const random = () => {
    const v = next();
    values.push(v);
    return v;
  };
  const { sb, WS, log, tick } = setup(t, {
    urls: ['ws://a/ws', 'ws://b/ws', 'ws://c/ws'], url: undefined, random, backoff: { minMs: 100, maxMs: 1000 },
  });
  sb.connect();
  await flush();
  const caps = [100, 200, 400, 800, 1000, 1000, 1000];
  for (const cap of caps) {
    const before = WS.all.length;
    WS.last.drop(1006); // refused before a welcome
    const { delayMs } = log.reconnect.at(-1);
    assert.ok(delayMs >= 0 && delayMs <= cap, `${delayMs} within [0, ${cap}]`);
    assert.equal(delayMs, Math.floor(0.999999 * cap));
    if (delayMs > 0) {
      await tick(delayMs - 1);
      assert.equal(WS.all.length, before, 'not before the delay');
    }
    await tick(1);
    assert.equal(WS.all.length, before + 1, 'reconnected after the delay');
  }
  const delays = log.reconnect.map((r) => r.delayMs);
  for (let i = 1; i < 5; i++) assert.ok(delays[i] > delays[i - 1], `delays grow: ${delays}`);
  assert.deepEqual(
    WS.all.map((w) => new URL(w.url).host),
    ['a', 'b', 'c', 'a', 'b', 'c', 'a', 'b'],
    'every reconnect tries the next URL',
  );
  assert.ok(log.error.every((e) => e.code === 'connect_failed'));

  // A welcome resets the attempt counter.
  WS.last.welcome();
  WS.last.drop(1006);
  assert.equal(log.reconnect.at(-1).delayMs, Math.floor(0.999999 * 100));

  // With a real random source every delay stays within its cap.
  next = Math.random;
  await tick(1000);
  for (let i = 0; i < 40; i++) {
    WS.last.drop(1006);
    const { delayMs } = log.reconnect.at(-1);
    const cap = Math.min(1000, 100 * 2 ** (i + 1)); // attempt 0 was used right after the welcome
    assert.ok(delayMs >= 0 && delayMs <= cap, `${delayMs} within [0, ${cap}]`);
    await tick(1000);
  }
});

test('close 4003: no reconnect, state closed, an error, waiting requests reject', async (t) => {
  const { sb, WS, log, tick } = await connected(t);
  const ws = WS.last;
  const published = assert.rejects(sb.publish('room:lobby', { text: 'hi' }), { code: 'disconnected' });
  ws.drop(4003, 'kicked by admin');
  await published;
  assert.equal(sb.state, 'closed');
  assert.equal(log.state.at(-1), 'closed');
  const err = log.error.at(-1);
  assert.ok(err instanceof SwitchboardError);
  assert.equal(err.code, 'disconnected');
  assert.equal(err.closeCode, 4003);
  assert.equal(err.message, 'kicked by admin');
  await tick(10 * 60_000);
  assert.equal(WS.all.length, 1, 'never reconnects');
  const late = assert.rejects(sb.rpc('x.y', {}), { code: 'timeout' });
  await tick(10_000);
  await late;
});

test('close 4001: a fresh token and an immediate reconnect', async (t) => {
  const { WS, tokens, log, tick } = await connected(t);
  assert.equal(tokens.length, 1);
  WS.last.recv({ type: 'error', code: 'token_expired', message: 'token expired' });
  WS.last.drop(4001, 'token expired');
  await tick(0);
  assert.equal(tokens.length, 2, 'the token callback is called again');
  assert.equal(WS.all.length, 2);
  assert.equal(WS.last.params.get('token'), tokens[1]);
  assert.deepEqual(log.error.map((e) => e.code), ['token_expired']);
});

test('token: callback called before every connect; refresh sent refreshBeforeMs before exp', async (t) => {
  const ttl = [120, 600, 3600];
  const tokens = [];
  const token = () =>
    new Promise((resolve) => {
      const tok = jwt({ sub: 'alice', exp: Math.floor(Date.now() / 1000) + ttl[Math.min(tokens.length, 2)] });
      tokens.push(tok);
      setImmediate(() => resolve(tok));
    });
  const { WS, tick } = await connected(t, { token, refreshBeforeMs: 30_000 });
  const ws1 = WS.last;
  assert.equal(ws1.params.get('token'), tokens[0]);
  assert.equal(tokenExpiry(tokens[0]), T0 / 1000 + 120);

  await tick(89_999); // exp - 30 s - 1 ms
  assert.equal(ws1.frames('refresh').length, 0);
  await tick(1);
  await flush();
  const refresh = ws1.lastFrame('refresh');
  assert.ok(refresh, 'refresh sent 30 s before exp');
  assert.equal(typeof refresh.id, 'number');
  assert.equal(refresh.token, tokens[1], 'with a fresh token');
  ws1.reply(refresh);
  await flush();

  // The next refresh follows the new token's exp: 600 s after it was issued, minus 30 s.
  await tick(569_999);
  assert.equal(ws1.frames('refresh').length, 1);
  await tick(1);
  await flush();
  assert.equal(ws1.frames('refresh').length, 2);

  // Reconnecting calls the callback again.
  ws1.drop(1006);
  await tick(0);
  await flush();
  assert.equal(WS.all.length, 2);
  assert.equal(tokens.length, 4);
  assert.equal(WS.last.params.get('token'), tokens[3]);
});

test('a failed refresh reply is reported as an error', async (t) => {
  const { WS, log, tick } = await connected(t, { refreshBeforeMs: 3_590_000 });
  await tick(10_000);
  const refresh = WS.last.lastFrame('refresh');
  WS.last.recv({ type: 'reply', id: refresh.id, ok: false, error: { code: 'invalid_token', message: 'bad signature' } });
  await flush();
  assert.equal(log.error.at(-1).code, 'invalid_token');
});

test('requests: made while disconnected they wait for the connection; timeout rejects with code timeout', async (t) => {
  const { sb, WS, tick } = setup(t, { requestTimeoutMs: 5000 });
  const early = sb.publish('room:lobby', { text: 'early' });
  const never = sb.rpc('slow.method', {});
  let settled = false;
  const neverRejects = assert.rejects(
    never.finally(() => (settled = true)),
    (e) => e instanceof SwitchboardError && e.code === 'timeout',
  );
  sb.connect();
  await flush();
  assert.equal(WS.last.sent.length, 0);
  await tick(1000);
  WS.last.welcome();
  const [pub, rpc] = [WS.last.lastFrame('publish'), WS.last.lastFrame('rpc')];
  assert.deepEqual(pub.data, { text: 'early' });
  assert.ok(pub.id < rpc.id, 'sent in the order they were made');
  WS.last.reply(pub, { epoch: 'r1', offset: 1 });
  assert.deepEqual(await early, { epoch: 'r1', offset: 1 });
  await tick(3999); // 5000 ms after it was made, less 1
  assert.equal(settled, false);
  await tick(1);
  await neverRejects;
  // A late reply for a timed-out request is ignored.
  WS.last.reply(rpc, { data: 1 });

  // Queued and never connected: times out too.
  WS.last.drop(4003);
  const queued = assert.rejects(sb.subscribe('room:x'), { code: 'timeout' });
  await tick(5000);
  await queued;
});

test('replies: errors reject with the server code and message', async (t) => {
  const { sb, WS, log, tick } = await connected(t);
  const ws = WS.last;
  const sub = sb.subscribe('room:secret');
  ws.recv({ type: 'reply', id: ws.lastFrame('subscribe').id, ok: false, error: { code: 'forbidden', message: 'not allowed to subscribe to room:secret' } });
  await assert.rejects(sub, (e) => e.code === 'forbidden' && e.message === 'not allowed to subscribe to room:secret');

  const call = sb.rpc('nothing.here', {});
  ws.recv({ type: 'reply', id: ws.lastFrame('rpc').id, ok: false, error: { code: 'no_route', message: 'no route for nothing.here' } });
  await assert.rejects(call, { code: 'no_route', message: 'no route for nothing.here' });

  const pub = sb.publish('room:lobby', 1);
  ws.recv({ type: 'reply', id: ws.lastFrame('publish').id, ok: false, error: { code: 'rate_limited' } });
  await assert.rejects(pub, { code: 'rate_limited' });

  // A refused room is not re-subscribed after a reconnect.
  ws.drop(1006);
  await tick(0);
  WS.last.welcome();
  assert.equal(WS.last.frames('subscribe').length, 0);
  assert.equal(log.error.filter((e) => e.code === 'forbidden').length, 0, 'reported through the promise');
});

test('rpc resolves the data; publish resolves {epoch, offset}; replies matched by numeric id', async (t) => {
  const { sb, WS } = await connected(t);
  const ws = WS.last;
  const a = sb.rpc('orders.create', { sku: 'A1' });
  const b = sb.publish('room:lobby', { text: 'hi' });
  const c = sb.rpc('orders.get', { id: 'o-17' });
  const [ra, rb, rc] = [ws.frames('rpc')[0], ws.lastFrame('publish'), ws.frames('rpc')[1]];
  assert.deepEqual(ra, { type: 'rpc', id: ra.id, method: 'orders.create', data: { sku: 'A1' } });
  assert.match(rb.idempotency_key, /^[A-Za-z0-9_.:-]{1,64}$/);
  assert.deepEqual(rb, { type: 'publish', id: rb.id, channel: 'room:lobby', idempotency_key: rb.idempotency_key, data: { text: 'hi' } });
  assert.equal(new Set([ra.id, rb.id, rc.id]).size, 3);
  for (const id of [ra.id, rb.id, rc.id]) assert.ok(Number.isInteger(id));
  // Out of order.
  ws.reply(rc, { data: { order: 'o-17', state: 'paid' } });
  ws.reply(rb, { epoch: 'r1', offset: 42 });
  ws.reply(ra, { data: { order: 'o-18' } });
  assert.deepEqual(await a, { order: 'o-18' });
  assert.deepEqual(await b, { epoch: 'r1', offset: 42 });
  assert.deepEqual(await c, { order: 'o-17', state: 'paid' });

  const bytes = sb.publish('room:bin', new Uint8Array([1, 2, 255]));
  const rbin = ws.lastFrame('publish');
  assert.equal(rbin.data_b64, Buffer.from([1, 2, 255]).toString('base64'));
  ws.reply(rbin, { epoch: 'b', offset: 1 });
  await bytes;

  const ping = sb.ping();
  ws.recv({ type: 'pong', id: ws.lastFrame('ping').id });
  assert.equal((await ping).type, 'pong');
});

test('publishes without a reply are sent again after a reconnect, same keys, in send order, before newer ones', async (t) => {
  const { sb, WS, tick } = await connected(t);
  const first = WS.last;
  const a = sb.publish('room:lobby', { n: 1 });
  const b = sb.publish('room:lobby', { n: 2 });
  const [fa, fb] = first.frames('publish');
  first.reply(fa, { epoch: 'r1', offset: 7 }); // a is answered; b is not
  assert.deepEqual(await a, { epoch: 'r1', offset: 7 });
  first.drop(1006);
  const c = sb.publish('room:lobby', { n: 3 }); // asked while disconnected
  await tick(0);
  WS.last.welcome();
  const again = WS.last.frames('publish');
  assert.deepEqual(again.map((f) => f.data.n), [2, 3], 'b first (retried), then c');
  assert.equal(again[0].idempotency_key, fb.idempotency_key, 'the retry carries the same key');
  assert.notEqual(again[1].idempotency_key, fb.idempotency_key);
  WS.last.reply(again[0], { epoch: 'r1', offset: 8 });
  WS.last.reply(again[1], { epoch: 'r1', offset: 9 });
  assert.deepEqual(await b, { epoch: 'r1', offset: 8 });
  assert.deepEqual(await c, { epoch: 'r1', offset: 9 });
});

test('publish: a caller-chosen idempotency key is sent as is; a retried publish still times out', async (t) => {
  const { sb, WS, tick } = await connected(t, { requestTimeoutMs: 1000 });
  const p = sb.publish('user:bob', { hi: 1 }, { idempotencyKey: 'order-17.sent' });
  assert.equal(WS.last.lastFrame('publish').idempotency_key, 'order-17.sent');
  const timedOut = assert.rejects(p, { code: 'timeout' });
  WS.last.drop(1006);
  await tick(1000);
  await timedOut;
});

test('resync frame: a resync event, the new position, dedupe goes on in the new epoch', async (t) => {
  const { sb, WS, log, tick } = await connected(t);
  const ws = WS.last;
  const sub = sb.subscribe('room:lobby');
  ws.reply(ws.lastFrame('subscribe'), { epoch: 'r1', offset: 4 });
  await sub;
  ws.recv(msg('room:lobby', 'r1', 5));
  ws.recv({ type: 'resync', channel: 'room:lobby', epoch: 'r2', offset: 0 });
  ws.recv(msg('room:lobby', 'r2', 1));
  ws.recv(msg('room:lobby', 'r2', 1));
  ws.recv({ type: 'resync', channel: 'user:alice', epoch: 'e2', offset: 3 });
  ws.recv(msg('user:alice', 'e2', 3));
  ws.recv(msg('user:alice', 'e2', 4));
  assert.deepEqual(log.resync, [
    { channel: 'room:lobby', epoch: 'r2', offset: 0 },
    { channel: 'user:alice', epoch: 'e2', offset: 3 },
  ]);
  assert.deepEqual(offsets(log, 'room:lobby'), ['r1:5', 'r2:1']);
  assert.deepEqual(offsets(log, 'user:alice'), ['e2:4']);
  assert.equal(WS.all.length, 1, 'no reconnect');
  // The next resume starts from the new epochs.
  ws.drop(1006);
  await tick(0);
  assert.equal(WS.last.params.get('since'), 'e2:4');
  WS.last.welcome({ epoch: 'e2', offset: 4, recovered: true });
  assert.deepEqual(WS.last.lastFrame('subscribe').since, { epoch: 'r2', offset: 1 });
});

test('a subscribe in flight when the connection drops resolves on the next connection', async (t) => {
  const { sb, WS, tick } = await connected(t);
  const sub = sb.subscribe('room:lobby');
  WS.last.drop(1006);
  await tick(0);
  WS.last.welcome();
  const frame = WS.last.lastFrame('subscribe');
  assert.equal(frame.channel, 'room:lobby');
  WS.last.reply(frame, { epoch: 'r1', offset: 3 });
  assert.equal((await sub).offset, 3);
});

test('unsubscribe: the room is no longer re-subscribed', async (t) => {
  const { sb, WS, tick } = await connected(t);
  const sub = sb.subscribe('room:lobby');
  WS.last.reply(WS.last.lastFrame('subscribe'), { epoch: 'r1', offset: 0 });
  await sub;
  const unsub = sb.unsubscribe('room:lobby');
  const frame = WS.last.lastFrame('unsubscribe');
  assert.equal(frame.channel, 'room:lobby');
  WS.last.reply(frame);
  assert.equal((await unsub).ok, true);
  WS.last.drop(1006);
  await tick(0);
  WS.last.welcome();
  assert.equal(WS.last.frames('subscribe').length, 0);
  // While disconnected there is nothing to undo: resolves at once.
  WS.last.drop(1006);
  assert.equal((await sb.unsubscribe('room:other')).ok, true);
});

test('close codes 4400/1002/1007/1009 emit an error and reconnect with backoff', async (t) => {
  const { WS, log, tick } = await connected(t, { random: () => 0.5, backoff: { minMs: 1000, maxMs: 8000 } });
  const expected = { 4400: 'too_many_bad_frames', 1002: 'protocol_error', 1007: 'invalid_utf8', 1009: 'too_large' };
  let n = 1;
  for (const [code, name] of Object.entries(expected)) {
    WS.last.drop(Number(code), 'bye');
    const err = log.error.at(-1);
    assert.equal(err.code, name);
    assert.equal(err.closeCode, Number(code));
    assert.equal(log.reconnect.at(-1).delayMs, 500, 'attempt counter reset by each welcome');
    await tick(499);
    assert.equal(WS.all.length, n);
    await tick(1);
    assert.equal(WS.all.length, ++n);
    WS.last.welcome();
  }
});

test('autoAck: debounced ack up to the newest personal offset; ack() acks now', async (t) => {
  const { sb, WS, tick } = await connected(t, {}, { epoch: 'e1', offset: 0 });
  const ws = WS.last;
  for (const o of [1, 2, 3]) ws.recv(msg('user:alice', 'e1', o));
  ws.recv(msg('room:lobby', 'r1', 9));
  assert.equal(ws.frames('ack').length, 0);
  await tick(249);
  assert.equal(ws.frames('ack').length, 0);
  await tick(1);
  assert.deepEqual(ws.frames('ack'), [{ type: 'ack', channel: 'user:alice', epoch: 'e1', offset: 3 }]);
  ws.recv(msg('user:alice', 'e1', 4));
  assert.equal(sb.ack(), true);
  assert.equal(ws.lastFrame('ack').offset, 4);
  await tick(1000);
  assert.equal(ws.frames('ack').length, 2, 'nothing new to ack');
  assert.equal(sb.ack(), false);

  // Delivered but not yet acked when the connection drops: acked on the next connection.
  ws.recv(msg('user:alice', 'e1', 5));
  ws.drop(1006);
  await tick(0);
  const ws2 = WS.last;
  ws2.welcome({ epoch: 'e1', offset: 5, recovered: true });
  assert.equal(ws2.params.get('since'), 'e1:5');
  await tick(250);
  assert.deepEqual(ws2.frames('ack'), [{ type: 'ack', channel: 'user:alice', epoch: 'e1', offset: 5 }]);
});

test('autoAck: false sends no acks by itself', async (t) => {
  const { sb, WS, tick } = await connected(t, { autoAck: false });
  WS.last.recv(msg('user:alice', 'e1', 1));
  await tick(5000);
  assert.equal(WS.last.frames('ack').length, 0);
  sb.ack();
  assert.equal(WS.last.frames('ack').length, 1);
});

test('presence and error frames are forwarded as events', async (t) => {
  const { WS, log } = await connected(t);
  WS.last.recv({ type: 'presence', channel: 'room:lobby', user: 'bob', event: 'join' });
  WS.last.recv({ type: 'error', code: 'bad_frame', message: 'nope' });
  assert.deepEqual(log.presence, [{ type: 'presence', channel: 'room:lobby', user: 'bob', event: 'join' }]);
  assert.equal(log.error.at(-1).code, 'bad_frame');
});

test('close() before the first welcome rejects connect() with code closed', async (t) => {
  const { sb, WS, log, tick } = setup(t);
  const p = assert.rejects(sb.connect(), { code: 'closed' });
  await flush();
  sb.close();
  await p;
  assert.equal(WS.last.closedByClient.code, 1000);
  await tick(60_000);
  assert.equal(WS.all.length, 1);
  assert.deepEqual(log.state, ['connecting', 'closed']);
});

test('close(): no more reconnects; waiting requests reject with code closed', async (t) => {
  const { sb, WS, log, tick } = await connected(t);
  const call = assert.rejects(sb.rpc('a.b', {}), { code: 'disconnected' });
  const sub = assert.rejects(sb.subscribe('room:lobby'), { code: 'closed' });
  sb.close();
  await call;
  await sub;
  assert.equal(WS.last.closedByClient.code, 1000);
  assert.equal(sb.state, 'closed');
  assert.equal(log.state.at(-1), 'closed');
  WS.last.drop(1000);
  await tick(60_000);
  assert.equal(WS.all.length, 1);
});
