// A promise-based Switchboard client over k6/experimental/websockets (JSON subprotocol).
//
//   const s = await openSession(url, token, { onFrame: (f, s) => …, since: { epoch, offset } });
//   s.welcome                       // the welcome frame; s.welcomeMs = time to it
//   const reply = await s.request({ type: 'subscribe', channel: 'room:x' });
//   const pong = await s.request({ type: 'ping' });
//   await s.close();
//
// Every `error` frame and every close the client did not ask for is counted
// (ws_error_frames, ws_unexpected_closes) so scripts can put thresholds on them.
import { WebSocket } from 'k6/experimental/websockets';
import { setTimeout, clearTimeout } from 'k6/timers';
import { Counter } from 'k6/metrics';
import { ORIGIN } from './config.js';

export const wsErrorFrames = new Counter('ws_error_frames');
export const wsUnexpectedCloses = new Counter('ws_unexpected_closes');
export const wsGoaways = new Counter('ws_goaways');

export function sleepMs(ms) {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

// Sleeps until the wall-clock time `t` (ms since the epoch).
export function sleepUntil(t) {
  return sleepMs(t - Date.now());
}

// Resolves true as soon as pred() holds, false when `deadline` (epoch ms) passes first.
export async function waitFor(pred, deadline, pollMs = 50) {
  while (!pred()) {
    if (Date.now() >= deadline) return false;
    await sleepMs(Math.min(pollMs, deadline - Date.now()));
  }
  return true;
}

class Session {
  constructor(ws, url) {
    this.ws = ws;
    this.url = url;
    this.welcome = null;
    this.welcomeMs = null;
    this.isOpen = false;
    this.closing = false;
    this.nextId = 1;
    this.pending = new Map(); // request id → { resolve, timer }
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
  }

  send(frame) {
    if (!this.isOpen) throw new Error(`send on a closed socket (${frame.type})`);
    this.ws.send(JSON.stringify(frame));
  }

  // Sends a frame with a fresh id; resolves with its `reply` (`pong` for a ping), or rejects
  // after timeoutMs.
  request(frame, timeoutMs = 10000) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no reply to ${frame.type} ${id} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      try {
        this.send(Object.assign({}, frame, { id }));
      } catch (e) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(e);
      }
    });
  }

  // Closes the socket (normal close); resolves once it is closed.
  close() {
    this.closing = true;
    if (this.isOpen) this.ws.close();
    return this.closed;
  }

  onClose() {
    const wasOpen = this.isOpen;
    this.isOpen = false;
    if (wasOpen && !this.closing) wsUnexpectedCloses.add(1);
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new Error(`socket closed before the reply to ${id}`));
    }
    this.pending.clear();
    this.resolveClosed();
  }
}

// k6 1.1's experimental WebSocket can drop the first frames of a connection: it starts reading
// before it queues the `open` event, and a frame queued ahead of `open` is discarded. The
// server sends `welcome` first, right after the upgrade, so that is the frame that goes.
// openSession therefore sends a `ping` as soon as the socket is open: by protocol the
// `welcome` comes before its `pong` (or before anything else), so any frame other than
// `welcome` arriving first proves the client lost it; the attempt is closed — nothing it
// received is passed on — counted in k6_lost_welcomes and repeated (at most 3 times).
export const k6LostWelcomes = new Counter('k6_lost_welcomes');
const OPEN_PING_ID = 0; // request() ids start at 1

// Opens a connection and resolves once `welcome` arrived; rejects when the handshake fails,
// the socket closes first, or no welcome comes within timeoutMs. Frames other than welcome and
// replies to request() go to onFrame(frame, session), from the first one after welcome on.
export async function openSession(url, token, opts = {}) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await openOnce(url, token, opts);
    } catch (e) {
      if (!e.welcomeLost || attempt >= 3) throw e;
      k6LostWelcomes.add(1);
    }
  }
}

function openOnce(url, token, { since, onFrame, timeoutMs = 10000, tags } = {}) {
  const full = since ? `${url}?since=${since.epoch}:${since.offset}` : url;
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const ws = new WebSocket(full, null, {
      headers: Object.assign({ Authorization: `Bearer ${token}` }, ORIGIN ? { Origin: ORIGIN } : {}),
      tags: Object.assign({ name: url }, tags || {}),
    });
    const s = new Session(ws, url);
    let settled = false;
    const fail = (msg, welcomeLost = false) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const err = new Error(`${url}: ${msg}`);
      err.welcomeLost = welcomeLost;
      reject(err);
    };
    const timer = setTimeout(() => {
      fail(`no welcome within ${timeoutMs} ms (${s.isOpen ? 'upgraded' : 'upgrade not complete'})`);
      s.close();
    }, timeoutMs);
    ws.onopen = () => {
      s.isOpen = true;
      if (s.closing) {
        ws.close(); // timed out while connecting
        return;
      }
      s.send({ type: 'ping', id: OPEN_PING_ID });
    };
    ws.onmessage = (e) => {
      let f;
      try {
        f = JSON.parse(e.data);
      } catch (err) {
        wsErrorFrames.add(1, { code: 'client_parse' });
        return;
      }
      if (!settled) {
        if (f.type === 'welcome') {
          settled = true;
          clearTimeout(timer);
          s.welcome = f;
          s.welcomeMs = Date.now() - started;
          resolve(s);
        } else if (f.type === 'error') {
          wsErrorFrames.add(1, { code: f.code || 'unknown' });
          fail(`error frame before welcome: ${f.code}`);
          s.close();
        } else {
          fail(`${f.type} frame before welcome: k6 dropped the welcome`, true);
          s.close();
        }
        return;
      }
      if (s.welcome === null) return; // a frame after a failed attempt
      if (f.type === 'pong' && f.id === OPEN_PING_ID) return;
      if ((f.type === 'reply' || f.type === 'pong') && s.pending.has(f.id)) {
        const p = s.pending.get(f.id);
        s.pending.delete(f.id);
        clearTimeout(p.timer);
        if (f.type === 'reply' && !f.ok) wsErrorFrames.add(1, { code: (f.error && f.error.code) || 'reply' });
        p.resolve(f);
        return;
      }
      if (f.type === 'error') wsErrorFrames.add(1, { code: f.code || 'unknown' });
      if (f.type === 'goaway') wsGoaways.add(1);
      if (onFrame) onFrame(f, s);
    };
    ws.onerror = (e) => {
      fail(`connection error: ${e.error || 'unknown'}`);
    };
    ws.onclose = () => {
      s.onClose();
      fail('closed before welcome');
    };
  });
}
