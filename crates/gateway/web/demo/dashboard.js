// Switchboard demo: a live monitoring board. Subscribes to room:dashboard and draws every
// point that arrives on a hand-written <canvas> line chart (no chart library).
//
// A point is a message whose data is {"series":"cpu","t":<ms>,"value":<number>}; `series`
// defaults to "value" and `t` to the message's `ts`, and a bare number is a value too.
// crates/gateway/web/feeder.mjs publishes such points through the server API.
//
// URL parameters (optional): ?room=NAME (default dashboard), ?user=NAME (default a random
// viewer name), ?nodes=ws://a/ws,ws://b/ws (connect there instead of this page's origin).

import { Switchboard } from '/switchboard.js';

const WINDOW_MS = 60_000; // the chart shows the last minute
const KEEP = 2_000; // points kept per series
const COLORS = ['#6366f1', '#ec4899', '#10b981', '#f59e0b', '#06b6d4', '#ef4444'];

const params = new URLSearchParams(location.search);
const roomName = (params.get('room') || 'dashboard').replace(/^room:/, '');
const room = `room:${roomName}`;
const user = params.get('user') || `viewer-${Math.random().toString(36).slice(2, 8)}`;
const sameOrigin = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`;
const nodes = (params.get('nodes') || '')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);

const $ = (id) => document.getElementById(id);
const els = {
  status: $('status'),
  points: $('points'),
  lastValue: $('last-value'),
  lastSeries: $('last-series'),
  rate: $('rate'),
  delay: $('delay'),
  legend: $('legend'),
  canvas: $('chart'),
  empty: $('chart-empty'),
};
$('channel-name').textContent = room;

/** series name → {color, points: [{t, v}]} */
const series = new Map();
let count = 0;
/** Arrival times of the last 10 s, for the rate. */
const arrivals = [];
let firstArrival = null;

// ---- connection -----------------------------------------------------------------------

const sb = new Switchboard({
  urls: nodes.length ? nodes : [sameOrigin],
  token: async () => {
    const res = await fetch(`/demo/token?user=${encodeURIComponent(user)}`, { cache: 'no-store' });
    const body = await res.json().catch(() => ({}));
    if (!res.ok || !body.token) throw new Error(body.message || `GET /demo/token: HTTP ${res.status}`);
    return body.token;
  },
});
sb.on('state', renderStatus);
sb.on('welcome', () => renderStatus(sb.state));
sb.on('message', onMessage);
sb.on('error', (e) => {
  console.warn('switchboard:', e.code ?? e, e.message ?? '');
  els.status.title = `last error: ${e.code ?? ''} ${e.message ?? ''}`.trim();
});
addEventListener('pagehide', () => sb.close());
renderStatus(sb.state);

await sb.connect();
await sb.subscribe(room).catch((e) => {
  els.empty.textContent = `Could not subscribe to ${room}: ${e.message}`;
});

function renderStatus(state) {
  const node = state === 'open' ? sb.node : null;
  els.status.dataset.state = state;
  if (node) els.status.dataset.node = node;
  else delete els.status.dataset.node;
  els.status.textContent = node ? `${state} · ${node}` : state;
}

// ---- data -------------------------------------------------------------------------------

function onMessage(m) {
  if (m.channel !== room) return;
  const d = m.data;
  const value = typeof d === 'number' ? d : Number(d?.value);
  if (!Number.isFinite(value)) return;
  const name = typeof d?.series === 'string' && d.series ? d.series : 'value';
  const t = Number.isFinite(d?.t) ? d.t : m.ts || Date.now();

  let s = series.get(name);
  if (!s) {
    s = { name, color: COLORS[series.size % COLORS.length], points: [] };
    series.set(name, s);
    renderLegend();
  }
  s.points.push({ t, v: value });
  if (s.points.length > KEEP) s.points.splice(0, s.points.length - KEEP);
  s.last = value;

  count += 1;
  const now = Date.now();
  firstArrival ??= now;
  arrivals.push(now);
  renderRate();

  els.points.textContent = String(count);
  els.points.dataset.count = String(count);
  els.lastValue.textContent = formatValue(value);
  els.lastSeries.textContent = `${name} at ${new Date(t).toLocaleTimeString()}`;
  els.delay.textContent = m.ts ? String(Math.max(0, now - m.ts)) : '–';
  els.empty.hidden = true;
  for (const el of els.legend.querySelectorAll('[data-series]')) {
    const v = series.get(el.dataset.series)?.last;
    el.querySelector('b').textContent = v === undefined ? '' : formatValue(v);
  }
  requestDraw();
}

/** Points per second over the last 10 s (or since the first point, if sooner). */
function renderRate() {
  const now = Date.now();
  while (arrivals.length && arrivals[0] < now - 10_000) arrivals.shift();
  if (firstArrival === null) return;
  const seconds = Math.min(10, Math.max(1, (now - firstArrival) / 1000));
  els.rate.textContent = (arrivals.length / seconds).toFixed(1);
}
setInterval(renderRate, 1000);

function renderLegend() {
  els.legend.replaceChildren(
    ...[...series.values()].map((s) => {
      const span = document.createElement('span');
      span.dataset.series = s.name;
      const swatch = document.createElement('i');
      swatch.style.background = s.color;
      const value = document.createElement('b');
      span.append(swatch, `${s.name} `, value);
      return span;
    }),
  );
}

function formatValue(v) {
  return Math.abs(v) >= 1000 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2);
}

// ---- the chart ----------------------------------------------------------------------------

let drawPending = false;
function requestDraw() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => {
    drawPending = false;
    draw();
  });
}
new ResizeObserver(requestDraw).observe(els.canvas);
matchMedia('(prefers-color-scheme: dark)').addEventListener('change', requestDraw);

/** 1, 2 or 5 × a power of ten: a step that gives about `n` ticks over `span`. */
function niceStep(span, n) {
  const raw = span / Math.max(1, n);
  const pow = 10 ** Math.floor(Math.log10(raw));
  const f = raw / pow;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * pow;
}

function draw() {
  const canvas = els.canvas;
  const dpr = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (!width || !height) return;
  if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);

  const css = getComputedStyle(document.documentElement);
  const muted = css.getPropertyValue('--muted').trim() || '#667085';
  const line = css.getPropertyValue('--line').trim() || '#e3e7ef';
  const font = `12px ${css.getPropertyValue('--font')}`;

  const all = [...series.values()].flatMap((s) => s.points);
  if (!all.length) return;
  const tMax = Math.max(...all.map((p) => p.t));
  let tMin = Math.max(tMax - WINDOW_MS, Math.min(...all.map((p) => p.t)));
  if (tMax - tMin < 1000) tMin = tMax - 1000;
  const visible = all.filter((p) => p.t >= tMin);
  let vMin = Math.min(...visible.map((p) => p.v));
  let vMax = Math.max(...visible.map((p) => p.v));
  if (vMax - vMin < 1e-9) {
    vMin -= 1;
    vMax += 1;
  }
  const step = niceStep(vMax - vMin, height < 260 ? 4 : 6);
  vMin = Math.floor(vMin / step) * step;
  vMax = Math.ceil(vMax / step) * step;

  ctx.font = font;
  const labelWidth = Math.max(...[vMin, vMax].map((v) => ctx.measureText(formatTick(v, step)).width));
  const pad = { left: Math.ceil(labelWidth) + 14, right: 12, top: 10, bottom: 26 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const x = (t) => pad.left + ((t - tMin) / (tMax - tMin)) * plotW;
  const y = (v) => pad.top + (1 - (v - vMin) / (vMax - vMin)) * plotH;

  // Horizontal grid and value labels.
  ctx.lineWidth = 1;
  ctx.strokeStyle = line;
  ctx.fillStyle = muted;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (let v = vMin; v <= vMax + step / 2; v += step) {
    const yy = Math.round(y(v)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(pad.left, yy);
    ctx.lineTo(width - pad.right, yy);
    ctx.stroke();
    ctx.fillText(formatTick(v, step), pad.left - 8, yy);
  }

  // Time labels: clock times at a nice number of seconds.
  const span = tMax - tMin;
  const secs = [1, 2, 5, 10, 15, 30, 60].find((s) => (span / (s * 1000)) <= Math.max(2, Math.floor(plotW / 90))) ?? 60;
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  for (let t = Math.ceil(tMin / (secs * 1000)) * secs * 1000; t <= tMax; t += secs * 1000) {
    const xx = x(t);
    if (xx < pad.left + 16 || xx > width - pad.right - 16) continue;
    const label = new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
    ctx.fillText(label, xx, height - pad.bottom + 8);
  }

  // One line per series with a soft fill under it, and a dot on the newest point.
  ctx.save();
  ctx.beginPath();
  ctx.rect(pad.left, pad.top - 4, plotW + 4, plotH + 8);
  ctx.clip();
  for (const s of series.values()) {
    const pts = s.points.filter((p) => p.t >= tMin);
    if (!pts.length) continue;
    ctx.beginPath();
    pts.forEach((p, i) => (i ? ctx.lineTo(x(p.t), y(p.v)) : ctx.moveTo(x(p.t), y(p.v))));
    ctx.lineJoin = 'round';
    ctx.lineWidth = 2;
    ctx.strokeStyle = s.color;
    ctx.stroke();
    if (series.size === 1 && pts.length > 1) {
      ctx.lineTo(x(pts[pts.length - 1].t), pad.top + plotH);
      ctx.lineTo(x(pts[0].t), pad.top + plotH);
      ctx.closePath();
      const gradient = ctx.createLinearGradient(0, pad.top, 0, pad.top + plotH);
      gradient.addColorStop(0, `${s.color}40`);
      gradient.addColorStop(1, `${s.color}00`);
      ctx.fillStyle = gradient;
      ctx.fill();
    }
    const last = pts[pts.length - 1];
    ctx.beginPath();
    ctx.arc(x(last.t), y(last.v), 4, 0, Math.PI * 2);
    ctx.fillStyle = s.color;
    ctx.fill();
  }
  ctx.restore();
}

function formatTick(v, step) {
  const decimals = Math.max(0, -Math.floor(Math.log10(step)));
  return v.toFixed(Math.min(decimals, 4));
}
