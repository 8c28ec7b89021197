// The server API (internal port): publish and broadcast with `Authorization: Bearer API_KEY`.
// Every call adds one sample to api_ok (2xx and a well-formed answer) and, on failure, logs
// the status and body once per VU so a wrong key or URL is obvious.
import http from 'k6/http';
import { Rate, Counter } from 'k6/metrics';
import { API_KEY } from './config.js';

export const apiOk = new Rate('api_ok');
export const apiRequests = new Counter('api_requests');
let warned = false;

function post(base, path, body) {
  const res = http.post(`${base}${path}`, JSON.stringify(body), {
    headers: { Authorization: `Bearer ${API_KEY}`, 'Content-Type': 'application/json' },
    tags: { name: path },
    timeout: '10s',
  });
  let json = null;
  try {
    json = res.json();
  } catch (e) {
    json = null;
  }
  return { status: res.status, json, body: res.body };
}

function record(ok, path, r) {
  apiRequests.add(1, { endpoint: path });
  apiOk.add(ok, { endpoint: path });
  if (!ok && !warned) {
    warned = true;
    console.error(`POST ${path} failed: HTTP ${r.status} ${String(r.body).slice(0, 200)}`);
  }
  return ok;
}

// POST /v1/publish; true when 200 with an epoch and an offset > 0.
export function publish(base, channel, data) {
  const r = post(base, '/v1/publish', { channel, data });
  const ok = r.status === 200 && r.json !== null && typeof r.json.epoch === 'string' && r.json.offset > 0;
  return record(ok, '/v1/publish', r);
}

// POST /v1/broadcast; true when 200 and every channel got an offset (no per-channel error).
export function broadcast(base, channels, data) {
  const r = post(base, '/v1/broadcast', { channels, data });
  const results = r.json && Array.isArray(r.json.results) ? r.json.results : [];
  const ok =
    r.status === 200 &&
    results.length === channels.length &&
    results.every((x) => !x.error && x.offset > 0);
  return record(ok, '/v1/broadcast', r);
}
