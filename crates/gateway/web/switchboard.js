// Switchboard browser/Node client — docs/protocol.md v1, JSON subprotocol.
// ES module, no dependencies, no build step. See README.md and switchboard.d.ts.

const SUBPROTOCOL = 'switchboard.v1.json';
const WS_OPEN = 1;

/** Close codes after which the client reports an 'error' and reconnects with backoff. */
const CLOSE_ERRORS = {
  1002: 'protocol_error',
  1007: 'invalid_utf8',
  1009: 'too_large',
  4008: 'slow_consumer',
  4400: 'too_many_bad_frames',
};

/** An error with a machine-readable `code` (the server's error code, or one of the client's). */
export class SwitchboardError extends Error {
  constructor(code, message, extra) {
    super(message || code);
    this.name = 'SwitchboardError';
    this.code = code;
    if (extra) Object.assign(this, extra);
  }
}

/** The `exp` claim (seconds) of a JWT, decoded without verification; null when unreadable. */
export function tokenExpiry(token) {
  try {
    const part = String(token).split('.')[1];
    if (!part) return null;
    let b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    while (b64.length % 4) b64 += '=';
    const exp = JSON.parse(atob(b64)).exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp : null;
  } catch {
    return null;
  }
}

function serverError(err) {
  const code = (err && err.code) || 'error';
  return new SwitchboardError(code, (err && err.message) || code);
}

function reportHandlerError(e) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(e);
  else console.error(e);
}

/** A fresh idempotency key: a UUID where the platform has one, else 32 random base-36 chars. */
function newKey(random) {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === 'function') return c.randomUUID();
  let key = '';
  while (key.length < 32) key += Math.floor(random() * 36).toString(36);
  return key;
}

function toBase64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return btoa(s);
}

export class Switchboard {
  constructor(options = {}) {
    const urls = options.urls && options.urls.length ? [...options.urls] : options.url ? [options.url] : [];
    if (!urls.length) throw new TypeError('Switchboard: `url` or `urls` is required');
    if (options.token === undefined) throw new TypeError('Switchboard: `token` is required');
    this._urls = urls;
    this._tokenSource = options.token;
    this._refreshBeforeMs = options.refreshBeforeMs ?? 30000;
    this._requestTimeoutMs = options.requestTimeoutMs ?? 10000;
    this._backoff = { minMs: 250, maxMs: 10000, ...(options.backoff || {}) };
    this._autoAck = options.autoAck ?? true;
    this._ackDelayMs = options.ackDelayMs ?? 250;
    this._WebSocket = options.WebSocket;
    this._random = options.random || Math.random;
    this._now = options.now || (() => Date.now());
    this._setTimeout = options.setTimeout || ((fn, ms) => globalThis.setTimeout(fn, ms));
    this._clearTimeout = options.clearTimeout || ((t) => globalThis.clearTimeout(t));

    this._handlers = new Map();
    this._state = 'closed';
    this._running = false; // connect() called and neither close() nor a 4003 since
    this._gen = 0; // bumps on every open/close, so stale async work can tell
    this._ws = null;
    this._ready = false; // a welcome arrived on the current socket
    this._urlIndex = 0;
    this._attempt = 0;
    this._token = null;
    this._timers = { reconnect: null, goaway: null, refresh: null, ack: null };
    this._connectWaiter = null;

    this._personal = { channel: null, pos: null }; // pos: {epoch, offset|null}
    this._acked = null;
    this._rooms = new Map(); // channel -> {channel, pos, confirmed, inflight, waiters, reply}
    this._other = new Map(); // channel -> {pos} (messages for channels we do not track)
    this._pending = new Map(); // request id -> entry (sent, awaiting its reply)
    this._queue = []; // entries waiting for a connection
    this._nextId = 0;

    this.user = null;
    this.connId = null;
    this.node = null;
  }

  /** 'connecting' | 'open' | 'closed' */
  get state() {
    return this._state;
  }

  /** The URL used by the current (or next) connection attempt. */
  get url() {
    return this._urls[this._urlIndex];
  }

  // ---- events -------------------------------------------------------------------------

  on(event, handler) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(handler);
    return this;
  }

  off(event, handler) {
    const set = this._handlers.get(event);
    if (set) set.delete(handler);
    return this;
  }

  _emit(event, value) {
    const set = this._handlers.get(event);
    if (!set) return;
    for (const h of [...set]) {
      try {
        h(value);
      } catch (e) {
        reportHandlerError(e);
      }
    }
  }

  _setState(state) {
    if (this._state === state) return;
    this._state = state;
    this._emit('state', state);
  }

  // ---- public API ---------------------------------------------------------------------

  /** Starts connecting (if not already); resolves with the first welcome frame. */
  connect() {
    if (this._running) return this._connectWaiter.promise;
    this._running = true;
    this._connectWaiter = deferred();
    this._open();
    return this._connectWaiter.promise;
  }

  /** Subscribes to a room; re-subscribed (with `since`) after every reconnect. */
  subscribe(channel) {
    let room = this._rooms.get(channel);
    if (room && room.confirmed) return Promise.resolve(room.reply);
    if (!room) {
      room = { channel, pos: null, confirmed: false, inflight: null, waiters: new Set(), reply: null };
      this._rooms.set(channel, room);
    }
    const p = new Promise((resolve, reject) => {
      const waiter = { resolve, reject, timer: null };
      waiter.timer = this._setTimeout(() => {
        room.waiters.delete(waiter);
        reject(new SwitchboardError('timeout', `subscribe ${channel} timed out after ${this._requestTimeoutMs} ms`));
      }, this._requestTimeoutMs);
      room.waiters.add(waiter);
    });
    if (this._ready) this._sendSubscribe(room);
    return p;
  }

  /** Unsubscribes from a room (and stops re-subscribing it). */
  unsubscribe(channel) {
    const room = this._rooms.get(channel);
    if (room) {
      this._rooms.delete(channel);
      settleWaiters(this, room, null, new SwitchboardError('cancelled', `unsubscribed from ${channel}`));
    }
    // Without a live connection the server holds no subscription: nothing to undo.
    if (!this._ready) return Promise.resolve({ type: 'reply', ok: true });
    return this._request({ type: 'unsubscribe', channel }, 'unsubscribe');
  }

  /**
   * Publishes to a channel; resolves {epoch, offset}. Bytes (Uint8Array/ArrayBuffer) go as
   * data_b64. Every publish carries an idempotency key (`options.idempotencyKey`, else a
   * random one): when the connection drops before the reply, the publish is sent again
   * with the same key after the reconnect, before anything newer — the server stores it
   * once and answers the first position (exactly-once, in send order).
   */
  publish(channel, data, options = {}) {
    const key = options.idempotencyKey ?? newKey(this._random);
    const frame = { type: 'publish', channel, idempotency_key: key };
    if (data instanceof ArrayBuffer) frame.data_b64 = toBase64(new Uint8Array(data));
    else if (ArrayBuffer.isView(data)) frame.data_b64 = toBase64(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    else frame.data = data;
    return this._request(frame, 'publish', (r) => ({ epoch: r.epoch, offset: r.offset }));
  }

  /** Calls a backend method through the gateway; resolves the reply's data. */
  rpc(method, data) {
    return this._request({ type: 'rpc', method, data }, 'rpc', (r) => r.data);
  }

  /** Application-level ping; resolves the pong frame. */
  ping() {
    return this._request({ type: 'ping' }, 'ping');
  }

  /** Acks the personal channel up to the newest offset delivered. Returns whether an ack was sent. */
  ack() {
    if (this._timers.ack !== null) {
      this._clearTimeout(this._timers.ack);
      this._timers.ack = null;
    }
    const ch = this._personal;
    const pos = ch.pos;
    if (!this._ready || !ch.channel || !pos || pos.offset == null || pos.offset <= 0) return false;
    const a = this._acked;
    if (a && a.epoch === pos.epoch && a.offset >= pos.offset) return false;
    if (!this._sendFrame({ type: 'ack', channel: ch.channel, epoch: pos.epoch, offset: pos.offset })) return false;
    this._acked = { epoch: pos.epoch, offset: pos.offset };
    return true;
  }

  /** Closes the connection for good (no more reconnects); pending requests reject with 'closed'. */
  close() {
    if (!this._running && !this._ws) {
      this._setState('closed');
      return;
    }
    this._running = false;
    this._gen++;
    this._clearTimers();
    const ws = this._ws;
    this._ws = null;
    this._lost();
    if (ws) {
      try {
        ws.close(1000, 'client closed');
      } catch {
        /* already closing */
      }
    }
    this._shutdown(new SwitchboardError('closed', 'the client was closed'));
  }

  // ---- connection lifecycle -----------------------------------------------------------

  async _open() {
    const gen = ++this._gen;
    this._clearTimer('reconnect');
    this._setState('connecting');
    let token;
    try {
      token = await this._fetchToken();
    } catch (e) {
      if (gen !== this._gen || !this._running) return;
      this._emit('error', e instanceof SwitchboardError ? e : new SwitchboardError('token_error', String((e && e.message) || e), { cause: e }));
      this._scheduleReconnect('backoff');
      return;
    }
    if (gen !== this._gen || !this._running) return;
    this._token = token;
    const url = this._buildUrl(this._urls[this._urlIndex], token);
    const WS = this._WebSocket || globalThis.WebSocket;
    let ws;
    try {
      if (typeof WS !== 'function') throw new Error('no WebSocket implementation: pass options.WebSocket');
      ws = new WS(url, [SUBPROTOCOL]);
    } catch (e) {
      this._emit('error', new SwitchboardError('connect_failed', String((e && e.message) || e), { cause: e }));
      this._scheduleReconnect('backoff');
      return;
    }
    this._ws = ws;
    try {
      ws.binaryType = 'arraybuffer';
    } catch {
      /* not supported */
    }
    ws.onmessage = (ev) => {
      if (this._ws === ws) this._onData(ev.data);
    };
    ws.onclose = (ev) => {
      if (this._ws === ws) this._onClose(ev.code, ev.reason);
    };
    ws.onerror = () => {
      /* a close event follows */
    };
  }

  async _fetchToken() {
    const src = this._tokenSource;
    const token = typeof src === 'function' ? await src() : await src;
    if (typeof token !== 'string' || !token) throw new SwitchboardError('token_error', 'the token callback returned no token');
    return token;
  }

  _buildUrl(base, token) {
    let url = `${base}${base.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
    const pos = this._personal.pos;
    if (pos && pos.offset != null && pos.epoch) {
      url += `&since=${encodeURIComponent(pos.epoch)}:${pos.offset}`;
    }
    return url;
  }

  _scheduleReconnect(mode) {
    if (!this._running) return;
    let delay = 0;
    if (mode === 'backoff') {
      const { minMs, maxMs } = this._backoff;
      const cap = Math.min(maxMs, minMs * 2 ** this._attempt);
      delay = Math.floor(this._random() * cap);
      if (delay > cap) delay = cap;
      this._attempt++;
    }
    this._urlIndex = (this._urlIndex + 1) % this._urls.length;
    this._setState('connecting');
    this._emit('reconnect', { attempt: this._attempt, delayMs: delay, url: this._urls[this._urlIndex] });
    this._clearTimer('reconnect');
    this._timers.reconnect = this._setTimeout(() => {
      this._timers.reconnect = null;
      if (this._running) this._open();
    }, delay);
  }

  _onClose(code, reason) {
    const wasReady = this._ready;
    this._ws = null;
    this._lost();
    if (!this._running) return;
    if (code === 4003) {
      const err = new SwitchboardError('disconnected', reason || 'disconnected by the server', { closeCode: code });
      this._running = false;
      this._gen++;
      this._clearTimers();
      this._emit('error', err);
      this._shutdown(err);
      return;
    }
    if (this._timers.goaway !== null) {
      this._setState('connecting'); // the goaway timer reconnects to the next URL
      return;
    }
    if (CLOSE_ERRORS[code]) {
      this._emit('error', new SwitchboardError(CLOSE_ERRORS[code], reason || `closed with ${code}`, { closeCode: code }));
    } else if (!wasReady && code !== 4001) {
      this._emit('error', new SwitchboardError('connect_failed', reason || `connection closed before welcome (${code})`, { closeCode: code }));
    }
    // 4001: token expired; the next attempt fetches a fresh token, right away.
    this._scheduleReconnect(code === 4001 ? 'now' : 'backoff');
  }

  /** The current socket is gone (or being replaced): settle what depended on it. */
  _lost() {
    this._ready = false;
    this._clearTimer('refresh');
    this._clearTimer('ack');
    for (const room of this._rooms.values()) {
      room.confirmed = false;
      room.inflight = null;
    }
    const pending = [...this._pending.values()].sort((a, b) => a.id - b.id);
    this._pending.clear();
    const retry = [];
    for (const entry of pending) {
      if (entry.kind === 'subscribe') continue; // its room (and waiters) are re-subscribed
      if (entry.kind === 'publish' && entry.frame.idempotency_key) {
        // Sent again (same key) on the next connection, before what was asked later;
        // its timer keeps running.
        entry.id = null;
        retry.push(entry);
        continue;
      }
      this._clearTimeout(entry.timer);
      if (entry.kind === 'unsubscribe') entry.resolve({ type: 'reply', id: entry.id, ok: true });
      else entry.reject(new SwitchboardError('disconnected', `connection lost before the ${entry.frame.type} reply`));
    }
    this._queue.unshift(...retry);
  }

  /** Terminal: nothing more will be sent; reject everything that waits. */
  _shutdown(err) {
    for (const entry of this._queue) {
      this._clearTimeout(entry.timer);
      entry.reject(err);
    }
    this._queue = [];
    for (const room of this._rooms.values()) settleWaiters(this, room, null, err);
    if (this._connectWaiter && !this._connectWaiter.settled) this._connectWaiter.reject(err);
    this._setState('closed');
  }

  _clearTimer(name) {
    if (this._timers[name] !== null) {
      this._clearTimeout(this._timers[name]);
      this._timers[name] = null;
    }
  }

  _clearTimers() {
    for (const name of Object.keys(this._timers)) this._clearTimer(name);
  }

  // ---- frames in ----------------------------------------------------------------------

  _onData(data) {
    let text = data;
    if (typeof text !== 'string') {
      if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) text = new TextDecoder().decode(data);
      else return;
    }
    let frame;
    try {
      frame = JSON.parse(text);
    } catch (e) {
      this._emit('error', new SwitchboardError('bad_frame', 'the server sent a frame that is not JSON'));
      return;
    }
    if (!frame || typeof frame !== 'object') return;
    switch (frame.type) {
      case 'welcome':
        return this._onWelcome(frame);
      case 'message':
        return this._onMessage(frame);
      case 'reply':
      case 'pong':
        return this._onReply(frame);
      case 'presence':
        return this._emit('presence', frame);
      case 'goaway':
        return this._onGoaway(frame);
      case 'resync':
        return this._onResync(frame);
      case 'error':
        return this._emit('error', frame);
      default:
        return undefined;
    }
  }

  _onWelcome(w) {
    this._ready = true;
    this._attempt = 0;
    this.user = w.user ?? null;
    this.connId = w.conn_id ?? null;
    this.node = w.node ?? null;
    const me = this._personal;
    if (me.channel !== w.channel) {
      me.channel = w.channel;
      me.pos = null;
      this._acked = null;
    }
    let resync = null;
    if (w.recovered === false) {
      me.pos = { epoch: w.epoch, offset: w.offset };
      resync = { channel: w.channel, epoch: w.epoch, offset: w.offset };
    } else if (w.recovered !== true && (!me.pos || me.pos.offset == null)) {
      // No resume: the inbox after the last ack follows; its offsets are not known yet.
      me.pos = { epoch: w.epoch, offset: null };
    }
    // Rooms first, then what waited for the connection, in the order it was asked.
    for (const room of this._rooms.values()) this._sendSubscribe(room);
    const queued = this._queue;
    this._queue = [];
    for (const entry of queued) this._sendEntry(entry);
    this._scheduleRefresh();
    if (this._autoAck && me.pos && me.pos.offset > 0) this._scheduleAck(); // delivered before a drop
    this._setState('open');
    this._emit('welcome', w);
    if (resync) this._emit('resync', resync);
    if (this._connectWaiter && !this._connectWaiter.settled) this._connectWaiter.resolve(w);
  }

  _positionHolder(channel) {
    if (channel === this._personal.channel) return this._personal;
    const room = this._rooms.get(channel);
    if (room) return room;
    let other = this._other.get(channel);
    if (!other) {
      other = { pos: null };
      this._other.set(channel, other);
    }
    return other;
  }

  _onMessage(m) {
    const holder = this._positionHolder(m.channel);
    const pos = holder.pos;
    if (typeof m.offset === 'number') {
      if (pos && pos.epoch === m.epoch && pos.offset != null && m.offset <= pos.offset) return; // duplicate
      holder.pos = { epoch: m.epoch, offset: m.offset };
    }
    this._emit('message', m);
    if (holder === this._personal && this._autoAck) this._scheduleAck();
  }

  _onReply(r) {
    const entry = this._pending.get(r.id);
    if (!entry) return;
    this._pending.delete(r.id);
    if (entry.kind === 'subscribe') return this._onSubscribeReply(entry.room, r);
    this._clearTimeout(entry.timer);
    if (r.type === 'pong' || r.ok) entry.resolve(entry.map ? entry.map(r) : r);
    else entry.reject(serverError(r.error));
    return undefined;
  }

  _onSubscribeReply(room, r) {
    room.inflight = null;
    if (this._rooms.get(room.channel) !== room) return; // unsubscribed meanwhile
    if (!r.ok) {
      this._rooms.delete(room.channel);
      const err = serverError(r.error);
      if (room.waiters.size) settleWaiters(this, room, null, err);
      else this._emit('error', err); // an automatic re-subscribe failed
      return;
    }
    room.confirmed = true;
    room.reply = r;
    let resync = null;
    if (r.recovered === false) {
      room.pos = { epoch: r.epoch, offset: r.offset };
      resync = { channel: room.channel, epoch: r.epoch, offset: r.offset };
    } else if (r.recovered !== true && r.epoch !== undefined) {
      // A fresh subscription starts at the channel's newest message.
      room.pos = { epoch: r.epoch, offset: r.offset ?? 0 };
    }
    if (resync) this._emit('resync', resync);
    settleWaiters(this, room, r, null);
  }

  /** History this connection depended on is gone: delivery goes on after the new position. */
  _onResync(f) {
    if (typeof f.channel !== 'string') return;
    const holder = this._positionHolder(f.channel);
    holder.pos = { epoch: f.epoch, offset: f.offset };
    this._emit('resync', { channel: f.channel, epoch: f.epoch, offset: f.offset });
  }

  _onGoaway(g) {
    this._emit('goaway', g);
    if (!this._running || this._timers.goaway !== null) return;
    const delay = Math.max(0, Number(g.reconnect_ms) || 0);
    this._urlIndex = (this._urlIndex + 1) % this._urls.length;
    this._clearTimer('reconnect');
    this._timers.goaway = this._setTimeout(() => {
      this._timers.goaway = null;
      if (!this._running) return;
      const ws = this._ws;
      if (ws) {
        this._ws = null;
        this._lost();
        try {
          ws.close(1000, 'goaway');
        } catch {
          /* already closing */
        }
      }
      this._open();
    }, delay);
  }

  // ---- frames out ---------------------------------------------------------------------

  _sendFrame(frame) {
    const ws = this._ws;
    if (!ws || ws.readyState !== WS_OPEN) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  _sendSubscribe(room) {
    if (room.confirmed || room.inflight !== null) return;
    const id = ++this._nextId;
    const frame = { type: 'subscribe', id, channel: room.channel };
    if (room.pos && room.pos.offset != null && room.pos.epoch) {
      frame.since = { epoch: room.pos.epoch, offset: room.pos.offset };
    }
    if (!this._sendFrame(frame)) return;
    room.inflight = id;
    this._pending.set(id, { kind: 'subscribe', room, id });
  }

  _request(frame, kind, map) {
    return new Promise((resolve, reject) => {
      const entry = { frame, kind, map, resolve, reject, timer: null, id: null };
      entry.timer = this._setTimeout(() => {
        if (entry.id !== null) this._pending.delete(entry.id);
        const i = this._queue.indexOf(entry);
        if (i >= 0) this._queue.splice(i, 1);
        reject(new SwitchboardError('timeout', `${frame.type} timed out after ${this._requestTimeoutMs} ms`));
      }, this._requestTimeoutMs);
      if (this._ready) this._sendEntry(entry);
      else this._queue.push(entry);
    });
  }

  _sendEntry(entry) {
    const id = ++this._nextId;
    entry.id = id;
    this._pending.set(id, entry);
    if (!this._sendFrame({ type: entry.frame.type, id, ...entry.frame })) {
      this._pending.delete(id);
      entry.id = null;
      this._queue.push(entry);
    }
  }

  _scheduleAck() {
    if (this._timers.ack !== null) return;
    this._timers.ack = this._setTimeout(() => {
      this._timers.ack = null;
      this.ack();
    }, this._ackDelayMs);
  }

  // ---- token refresh ------------------------------------------------------------------

  _scheduleRefresh() {
    this._clearTimer('refresh');
    const exp = tokenExpiry(this._token);
    if (exp === null) return;
    const left = exp * 1000 - this._now();
    let delay = left - this._refreshBeforeMs;
    if (delay < 0) delay = Math.max(0, Math.floor(left / 2));
    this._timers.refresh = this._setTimeout(() => {
      this._timers.refresh = null;
      this._refresh();
    }, delay);
  }

  async _refresh() {
    const gen = this._gen;
    let token;
    try {
      token = await this._fetchToken();
    } catch (e) {
      if (gen === this._gen) this._emit('error', e instanceof SwitchboardError ? e : new SwitchboardError('token_error', String((e && e.message) || e)));
      return;
    }
    if (gen !== this._gen || !this._ready) return;
    this._request({ type: 'refresh', token }, 'refresh').then(
      () => {
        if (gen !== this._gen) return;
        this._token = token;
        this._scheduleRefresh();
      },
      (e) => {
        if (gen === this._gen && e.code !== 'disconnected') this._emit('error', e);
      },
    );
  }
}

function deferred() {
  const d = { settled: false };
  d.promise = new Promise((resolve, reject) => {
    d.resolve = (v) => {
      d.settled = true;
      resolve(v);
    };
    d.reject = (e) => {
      d.settled = true;
      reject(e);
    };
  });
  d.promise.catch(() => {}); // a caller that never awaited connect() gets no unhandled rejection
  return d;
}

function settleWaiters(sb, room, value, err) {
  const waiters = [...room.waiters];
  room.waiters.clear();
  for (const w of waiters) {
    sb._clearTimeout(w.timer);
    if (err) w.reject(err);
    else w.resolve(value);
  }
}

export default Switchboard;
