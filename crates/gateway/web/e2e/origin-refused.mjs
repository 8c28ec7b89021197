// Scenario 4: a page from a foreign origin is refused when an allow-list is set.
//
// The target node runs with --allowed-origins <allowed origin>. The chat page served
// from the allowed origin connects to it (status open). The same page served from a
// foreign origin, pointed at the same node, never gets open: its upgrades are refused
// (Chromium reports the handshake's 403 in the console), and a bare `new WebSocket()`
// from that page gets an error and a 1006 close without ever opening.
// Screenshots: origin-allowed.png, origin-refused.png.
//
//   node origin-refused.mjs --ws ws://127.0.0.1:P1/ws --allowed-origin http://127.0.0.1:P1 \
//        --foreign-origin http://127.0.0.1:P2 [--node ID] [--watch-ms 3000] [--artifacts DIR]

import { args, run, check, chatUrl, waitOpen, status, recordStatus, statusLog, redact } from './lib.mjs';

const SCENARIO = 'origin-refused';
const opts = args(SCENARIO, {
  ws: { required: true },
  'allowed-origin': { required: true },
  'foreign-origin': { required: true },
  node: {},
  room: { default: 'e2e-origin' },
  'watch-ms': { default: '3000' },
  'wait-ms': { default: '10000' },
});
const WAIT = Number(opts['wait-ms']);
const WATCH = Number(opts['watch-ms']);

await run(SCENARIO, opts, async ({ newPage, shot }) => {
  // The foreign page first: it watches for WATCH ms while the allowed page connects.
  const foreign = await newPage('foreign');
  const consoleErrors = [];
  foreign.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(redact(m.text()));
  });
  const sockets = [];
  foreign.on('websocket', (ws) => {
    const s = { url: redact(ws.url()), frames: 0, error: null, closed: false };
    sockets.push(s);
    ws.on('framereceived', () => { s.frames += 1; });
    ws.on('socketerror', (e) => { s.error = String(e); });
    ws.on('close', () => { s.closed = true; });
  });
  await foreign.goto(chatUrl(opts['foreign-origin'], { user: 'mallory', room: opts.room, nodes: [opts.ws] }));
  await recordStatus(foreign);

  const allowed = await newPage('allowed');
  await allowed.goto(chatUrl(opts['allowed-origin'], { user: 'carol', room: opts.room, nodes: [opts.ws] }));
  const allowedStatus = await waitOpen(allowed, WAIT, opts.node);

  // A bare WebSocket from the foreign page: no token needed, the Origin check comes first.
  const bare = await foreign.evaluate((url) => new Promise((resolve) => {
    const r = { opened: false, error: false, code: null };
    const ws = new WebSocket(url);
    ws.onopen = () => { r.opened = true; };
    ws.onerror = () => { r.error = true; };
    ws.onclose = (e) => { r.code = e.code; resolve(r); };
    setTimeout(() => resolve(r), 5000);
  }), opts.ws);

  const watchUntil = Date.now() + WATCH;
  while (Date.now() < watchUntil) {
    const s = await status(foreign);
    check(s.state !== 'open', `the foreign page's status became open: ${s.text}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const foreignStatus = await status(foreign);
  const log = await statusLog(foreign);
  check(!log.some((t) => /\bopen\b/i.test(t) && !/connecting|closed/i.test(t)), `the foreign page was open at some point: ${log.join(' → ')}`);
  check(!bare.opened && bare.error && bare.code === 1006, `a bare WebSocket from the foreign page: ${JSON.stringify(bare)}`);
  const refusals = consoleErrors.filter((t) => /WebSocket/i.test(t) && /403/.test(t));
  check(refusals.length > 0, `no WebSocket 403 in the foreign page's console: ${JSON.stringify(consoleErrors.slice(0, 5))}`);
  check(sockets.every((s) => s.frames === 0), `the foreign page received frames: ${JSON.stringify(sockets)}`);

  await shot(allowed, 'origin-allowed.png');
  await shot(foreign, 'origin-refused.png');
  return {
    allowed: { status: allowedStatus },
    foreign: {
      status: foreignStatus,
      status_log: log,
      attempts: sockets.length,
      sockets: sockets.slice(0, 5),
      console_403: refusals.length,
      console_sample: refusals[0] ?? null,
      bare_websocket: bare,
    },
  };
});
