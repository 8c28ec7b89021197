// Shared plumbing for the end-to-end scenarios: arguments, launching Debian's Chromium
// through playwright-core (never a downloaded browser), the demo pages' test hooks,
// screenshots, and the one JSON result line each scenario prints on stdout.
//
// Every scenario prints exactly one JSON line that starts with {"scenario": …} as its
// result (the drain scenario also prints a {"ready": …} line first, see drain.mjs) and
// exits 0 when it passed, 1 when it failed (the result line then has "ok": false and
// an "error" that says what was expected and what was seen), 2 on bad arguments.

import { mkdtemp, rm, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

/** The flags Chromium needs on this kind of machine (see the README's browser tests). */
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

const started = Date.now();

/** Milliseconds since the scenario started. */
export const elapsed = () => Date.now() - started;

/**
 * Parses `--name value` options. `spec` maps option names to
 * `{ type: 'string'|'boolean', default?, required? }`; every scenario also takes
 * `--artifacts DIR` (screenshots; env E2E_ARTIFACTS), `--chromium PATH` (env CHROMIUM,
 * default /usr/bin/chromium) and `--timeout-ms N` (whole scenario; default 45000).
 */
export function args(scenario, spec) {
  const options = {
    artifacts: { type: 'string', default: process.env.E2E_ARTIFACTS ?? 'artifacts' },
    chromium: { type: 'string', default: process.env.CHROMIUM ?? '/usr/bin/chromium' },
    'timeout-ms': { type: 'string', default: '45000' },
  };
  for (const [name, s] of Object.entries(spec)) {
    options[name] = { type: s.type ?? 'string', ...(s.default !== undefined ? { default: s.default } : {}) };
  }
  let values;
  try {
    ({ values } = parseArgs({ options, allowPositionals: false }));
  } catch (e) {
    usage(scenario, spec, e.message);
  }
  for (const [name, s] of Object.entries(spec)) {
    if (s.required && (values[name] === undefined || values[name] === '')) {
      usage(scenario, spec, `--${name} is required`);
    }
  }
  return values;
}

function usage(scenario, spec, why) {
  const names = Object.entries(spec)
    .map(([n, s]) => (s.required ? `--${n} …` : `[--${n} …]`))
    .join(' ');
  process.stderr.write(`${scenario}: ${why}\nusage: node ${scenario}.mjs ${names} [--artifacts DIR]\n`);
  process.exit(2);
}

/** Thrown by `check`: a failed expectation, reported as the result's `error`. */
export class Failure extends Error {}

export function check(cond, message) {
  if (!cond) throw new Failure(message);
}

/**
 * Runs `body(ctx)` with a fresh Chromium (its own temporary profile, removed after) and
 * prints the result line. `ctx` has `browser` (the persistent context), `newPage(name,
 * viewport?)`, `shot(page, file)`, `artifacts`, and `log` (diagnostics that go into a
 * failed result). The scenario fails when it exceeds `--timeout-ms`.
 */
export async function run(scenario, opts, body) {
  const profile = await mkdtemp(join(tmpdir(), 'switchboard-e2e-'));
  const diagnostics = [];
  const shots = [];
  let context;
  const timeoutMs = Number(opts['timeout-ms']);
  let timer;
  const finish = async (result, code) => {
    clearTimeout(timer);
    process.stdout.write(`${JSON.stringify({ scenario, ...result, screenshots: shots, elapsed_ms: elapsed() })}\n`);
    try {
      await context?.close();
    } catch {
      // the browser may already be gone
    }
    await rm(profile, { recursive: true, force: true }).catch(() => {});
    process.exit(code);
  };
  timer = setTimeout(() => {
    finish({ ok: false, error: `scenario timed out after ${timeoutMs} ms`, diagnostics: diagnostics.slice(-30) }, 1);
  }, timeoutMs);
  try {
    await mkdir(opts.artifacts, { recursive: true });
    context = await chromium.launchPersistentContext(profile, {
      executablePath: opts.chromium,
      headless: true,
      args: CHROMIUM_FLAGS,
      viewport: { width: 1100, height: 760 },
      timeout: 20000,
    });
    const ctx = {
      browser: context,
      artifacts: opts.artifacts,
      log: (line) => diagnostics.push(`[${elapsed()}ms] ${line}`),
      async newPage(name, viewport) {
        const page = await context.newPage();
        if (viewport) await page.setViewportSize(viewport);
        page.on('console', (m) => {
          if (m.type() === 'error' || m.type() === 'warning') {
            diagnostics.push(`[${elapsed()}ms] ${name} console.${m.type()}: ${redact(m.text())}`);
          }
        });
        page.on('pageerror', (e) => diagnostics.push(`[${elapsed()}ms] ${name} pageerror: ${e.message}`));
        return page;
      },
      async shot(page, file) {
        const path = join(opts.artifacts, file);
        // A page in the background is not repainted: bring it to the front first.
        await page.bringToFront();
        await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
        await page.screenshot({ path, fullPage: true, animations: 'disabled' });
        shots.push(path);
        return path;
      },
    };
    const result = await body(ctx);
    await finish({ ok: true, ...result }, 0);
  } catch (e) {
    const error = e instanceof Failure ? e.message : `${e.name}: ${e.message}`;
    process.stderr.write(`${scenario} FAILED: ${error}\n${diagnostics.slice(-30).join('\n')}\n`);
    await finish({ ok: false, error, diagnostics: diagnostics.slice(-30) }, 1);
  }
}

/** Hides tokens in URLs that end up in diagnostics. */
export function redact(text) {
  return String(text).replace(/token=[A-Za-z0-9._-]+/g, 'token=…');
}

/** Polls `fn` (async) every 50 ms until it returns a truthy value; throws `Failure`
 * with `what` and the last value seen after `ms`. */
export async function until(what, ms, fn) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) {
      throw new Failure(`${what}: not true within ${ms} ms (last seen: ${JSON.stringify(last === undefined ? null : last)})`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

// --- The demo pages' test hooks ---------------------------------------------------

/** The chat page's URL for `user` in `room`, connecting to the `nodes` WebSocket URLs. */
export function chatUrl(origin, { user, room, nodes }) {
  const q = new URLSearchParams({ user, room });
  if (nodes?.length) q.set('nodes', nodes.join(','));
  return `${origin.replace(/\/$/, '')}/chat.html?${q}`;
}

/** The dashboard page's URL. */
export function dashboardUrl(origin, { nodes } = {}) {
  const q = new URLSearchParams();
  if (nodes?.length) q.set('nodes', nodes.join(','));
  const s = q.toString();
  return `${origin.replace(/\/$/, '')}/dashboard.html${s ? `?${s}` : ''}`;
}

/** `{state, node, text}` of the `status` element: `state` is connecting/open/closed (or
 * whatever the page shows), `node` the node id it names, if any. */
export async function status(page) {
  return page.evaluate(() => {
    const el = document.querySelector('[data-testid="status"]');
    if (!el) return { state: 'missing', node: null, text: '' };
    const text = (el.textContent ?? '').trim();
    const state = el.dataset.state ?? (text.match(/\b(connecting|open|closed|reconnecting|offline|error)\b/i)?.[1]?.toLowerCase() ?? text);
    const node = el.dataset.node ?? null;
    return { state, node, text };
  });
}

/** Waits until the page's status is `open`, on `node` when given (a node id that the
 * status text contains). */
export async function waitOpen(page, ms, node) {
  return until(`status open${node ? ` on ${node}` : ''}`, ms, async () => {
    const s = await status(page);
    if (s.state !== 'open') return false;
    if (node && s.node !== node && !s.text.includes(node)) return false;
    return s;
  });
}

/** The chat page's messages: `{offset, from, text}` in list order. */
export async function messages(page) {
  return page.$$eval('[data-testid="message-list"] [data-testid="message"]', (els) =>
    els.map((el) => ({
      offset: el.dataset.offset === undefined ? null : Number(el.dataset.offset),
      from: el.dataset.from ?? null,
      text: (el.querySelector('[data-testid="message-text"]') ?? el).textContent.trim(),
    })),
  );
}

/** The users the presence list shows. */
export async function presence(page) {
  return page.$$eval('[data-testid="presence-list"] [data-testid="presence-user"]', (els) =>
    els.map((el) => el.dataset.user ?? el.textContent.trim()),
  );
}

/** Types `text` into the chat input and presses the send button. */
export async function send(page, text) {
  await page.fill('[data-testid="message-input"]', text);
  await page.click('[data-testid="send-button"]');
}

/** Records every change of the status element (text), from now on, into
 * `window.__statusLog` (read with `statusLog`). */
export async function recordStatus(page) {
  await page.evaluate(() => {
    const el = document.querySelector('[data-testid="status"]');
    window.__statusLog = [el ? el.textContent.trim() : 'missing'];
    if (!el) return;
    new MutationObserver(() => {
      const t = el.textContent.trim();
      if (window.__statusLog[window.__statusLog.length - 1] !== t) window.__statusLog.push(t);
    }).observe(el, { childList: true, characterData: true, subtree: true, attributes: true });
  });
}

/** The texts of the chat page's notices (joins, leaves, goaway, …). */
export async function notices(page) {
  return page.$$eval('[data-testid="notice"]', (els) => els.map((el) => el.textContent.trim()));
}

export async function statusLog(page) {
  return page.evaluate(() => window.__statusLog ?? []);
}
