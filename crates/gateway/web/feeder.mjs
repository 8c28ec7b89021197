#!/usr/bin/env node
// The dashboard demo's data source: publishes a random-walk value to a room through the
// Switchboard server API (POST /v1/publish on the internal port), like a backend would.
// Node >= 20, no dependencies.
//
//   node crates/gateway/web/feeder.mjs --api http://127.0.0.1:9090 --key dev-api-key \
//        [--count 0] [--interval-ms 500] [--channel room:dashboard] [--series cpu] [--quiet]
//
// Every message is one point: {"series":"cpu","t":<ms since the epoch>,"value":<number>}
// (the shape dashboard.js draws). --count N publishes N points and exits 0 (0 = until
// SIGINT/SIGTERM); a failed publish (node unreachable, 5xx) is reported and retried on the
// next tick, so only accepted points count (with --count it gives up, status 1, after 30 s
// of failures); a 4xx answer (wrong key, bad channel) exits 1 at once.
// --key defaults to $SWITCHBOARD_API_KEY.

import { parseArgs } from 'node:util';

const USAGE = `usage: node feeder.mjs --api URL --key KEY [--count N] [--interval-ms MS]
                        [--channel room:dashboard] [--series NAME] [--quiet]`;

function fail(message) {
  process.stderr.write(`feeder: ${message}\n${USAGE}\n`);
  process.exit(2);
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      api: { type: 'string', default: 'http://127.0.0.1:9090' },
      key: { type: 'string', default: process.env.SWITCHBOARD_API_KEY ?? '' },
      count: { type: 'string', default: '0' },
      'interval-ms': { type: 'string', default: '500' },
      channel: { type: 'string', default: 'room:dashboard' },
      series: { type: 'string', default: 'cpu' },
      quiet: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }));
} catch (e) {
  fail(e.message);
}
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}

const api = values.api.replace(/\/+$/, '');
const count = Number(values.count);
const interval = Number(values['interval-ms']);
const { channel, series, key, quiet } = values;
if (!/^https?:\/\/[^/]+/.test(api)) fail(`--api must be an http(s) URL, got ${JSON.stringify(values.api)}`);
if (!key) fail('--key (or SWITCHBOARD_API_KEY) is required');
if (!Number.isInteger(count) || count < 0) fail('--count must be a whole number >= 0 (0 = forever)');
if (!Number.isFinite(interval) || interval < 1) fail('--interval-ms must be >= 1');

let stopping = false;
process.on('SIGINT', () => { stopping = true; });
process.on('SIGTERM', () => { stopping = true; });

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A random walk between 0 and 100 that drifts back towards 50. */
let value = 35 + Math.random() * 30;
function next() {
  value += (Math.random() - 0.5) * 8 + (50 - value) * 0.03;
  value = Math.min(100, Math.max(0, value));
  return Math.round(value * 10) / 10;
}

async function publish(point) {
  const res = await fetch(`${api}/v1/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ channel, data: point }),
    signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
    // A wrong key, channel or body: retrying would not help.
    process.stderr.write(`feeder: the server API refused the point: HTTP ${res.status}: ${text.slice(0, 200)}\n`);
    process.exit(1);
  }
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${text.slice(0, 200)}`);
  return JSON.parse(text);
}

/** With --count, give up after this long without one accepted publish. */
const GIVE_UP_MS = 30000;

let sent = 0;
let failing = false;
let failingSince = 0;
let nextAt = Date.now();
while (!stopping && (count === 0 || sent < count)) {
  const point = { series, t: Date.now(), value: next() };
  try {
    const answer = await publish(point);
    sent += 1;
    if (failing || sent === 1) {
      if (!quiet || failing) {
        process.stdout.write(`feeder: publishing ${series} to ${channel} every ${interval} ms through ${api} (offset ${answer.offset})\n`);
      }
      failing = false;
    }
  } catch (e) {
    if (!failing) {
      // Before the first accepted point a refused connection means the node is starting.
      const starting = sent === 0 && e.cause?.code === 'ECONNREFUSED';
      process.stderr.write(starting
        ? `feeder: waiting for the server API at ${api}\n`
        : `feeder: publish failed (${e.cause?.code ?? e.message}); retrying every ${interval} ms\n`);
      failingSince = Date.now();
    }
    failing = true;
    if (count > 0 && Date.now() - failingSince > GIVE_UP_MS) {
      process.stderr.write(`feeder: giving up after ${GIVE_UP_MS / 1000} s of failed publishes (${sent} of ${count} sent)\n`);
      process.exit(1);
    }
  }
  nextAt += interval;
  const wait = nextAt - Date.now();
  if (wait > 0) await sleep(wait);
  else nextAt = Date.now();
}
if (!quiet) process.stdout.write(`feeder: published ${sent} point${sent === 1 ? '' : 's'} to ${channel}\n`);
process.exit(count === 0 || sent === count ? 0 : 1);
