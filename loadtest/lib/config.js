// Settings shared by every script, all read from the environment (k6 run -e NAME=value or
// the process environment). Defaults match `make cluster` on loopback.
import exec from 'k6/execution';

export const DEV_SECRET = 'dev-secret-change-me-0123456789abcdef';

export function envStr(name, def) {
  const v = __ENV[name];
  return v === undefined || v === '' ? def : v;
}

export function envInt(name, def) {
  const raw = envStr(name, undefined);
  if (raw === undefined) return def;
  const n = Number(raw);
  if (!Number.isInteger(n)) throw new Error(`${name} must be an integer, got "${raw}"`);
  return n;
}

export function envFloat(name, def) {
  const raw = envStr(name, undefined);
  if (raw === undefined) return def;
  const n = Number(raw);
  if (!Number.isFinite(n)) throw new Error(`${name} must be a number, got "${raw}"`);
  return n;
}

export function envBool(name, def) {
  const raw = envStr(name, undefined);
  if (raw === undefined) return def;
  return ['1', 'true', 'yes', 'on'].includes(raw.toLowerCase());
}

export function envList(name, def) {
  return envStr(name, def)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

// A public base URL ("ws://host:8081", "http://host:8081", "wss://ingress/…") → the /ws URL.
export function wsUrl(base) {
  let u = base.replace(/^http:/, 'ws:').replace(/^https:/, 'wss:').replace(/\/+$/, '');
  if (!/^wss?:\/\//.test(u)) u = `ws://${u}`;
  return u.endsWith('/ws') ? u : `${u}/ws`;
}

export function httpUrl(base) {
  let u = base.replace(/\/+$/, '');
  if (!/^https?:\/\//.test(u)) u = `http://${u}`;
  return u;
}

export const TARGETS = envList(
  'TARGETS',
  'ws://127.0.0.1:8081,ws://127.0.0.1:8082,ws://127.0.0.1:8083',
).map(wsUrl);
export const API_URLS = envList(
  'API_URLS',
  'http://127.0.0.1:9091,http://127.0.0.1:9092,http://127.0.0.1:9093',
).map(httpUrl);
export const JWT_SECRET = envStr('JWT_SECRET', DEV_SECRET);
export const API_KEY = envStr('API_KEY', 'dev-api-key');
export const TOKEN_TTL_S = envInt('TOKEN_TTL_S', 3600);
// Sent as the Origin header of every WebSocket upgrade when set (k6 sends none by default).
export const ORIGIN = envStr('ORIGIN', '');
// Extra bytes of padding in every message body.
export const PAYLOAD_BYTES = envInt('PAYLOAD_BYTES', 64);
// Time every connection has to connect and subscribe before the first message goes out.
export const SETTLE_MS = envInt('SETTLE_MS', 3000);
// Time receivers keep listening after the last message went out.
export const DRAIN_MS = envInt('DRAIN_MS', 5000);
// p95 / p99 limits (ms) of the end-to-end delivery latency thresholds.
export const LATENCY_P95_MS = envInt('LATENCY_P95_MS', 1000);
export const LATENCY_P99_MS = envInt('LATENCY_P99_MS', 2000);

if (TARGETS.length === 0) throw new Error('TARGETS is empty');
if (API_URLS.length === 0) throw new Error('API_URLS is empty');

export const PADDING = 'x'.repeat(Math.max(0, PAYLOAD_BYTES));

// 0-based slot of this iteration in its scenario: with per-vu-iterations and one iteration per
// VU it numbers the VUs of that scenario 0..vus-1, whatever other scenarios run beside it.
export function slot() {
  return exec.scenario.iterationInTest;
}

// The /ws URL of node i (round robin over TARGETS).
export function target(i) {
  return TARGETS[i % TARGETS.length];
}

export function apiUrl(i) {
  return API_URLS[i % API_URLS.length];
}

// A run id that keeps channel and user names of different runs apart.
export function newRunId() {
  return envStr('RUN_ID', `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`);
}

export const TREND_STATS = ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)', 'count'];

// The longest a run may take whose sending lasts sendMs (plus anything the script adds, e.g.
// reconnect-churn's offline time): SETTLE_MS + sendMs + DRAIN_MS + 30 s, as a k6 duration.
export function maxDuration(sendMs) {
  return `${Math.ceil((SETTLE_MS + sendMs + DRAIN_MS) / 1000) + 30}s`;
}

// A scenario of `vus` VUs that run their function once each (one VU = one user; slot()
// numbers them), for at most `duration`; `exec` names the exported function (default: default).
export function oncePerVu(vus, duration, exec) {
  const s = { executor: 'per-vu-iterations', vus, iterations: 1, maxDuration: duration };
  if (exec) s.exec = exec;
  return s;
}

// setup() of the delivery scripts: a new run id, the line `describe(run)` says about the run,
// and t0, the moment sending starts (now + SETTLE_MS), for every VU.
export function startRun(describe) {
  const run = newRunId();
  console.log(describe(run));
  return { run, t0: Date.now() + SETTLE_MS };
}
