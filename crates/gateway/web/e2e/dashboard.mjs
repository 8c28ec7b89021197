// Scenario 3: the dashboard chart receives N points from the feeder.
//
// Opens the dashboard page, waits until it is connected, runs the feeder
// (crates/gateway/web/feeder.mjs: N points to room:dashboard through the server API),
// and waits until the page's `points` counter shows exactly N (and stays there).
// Screenshot: dashboard.png.
//
//   node dashboard.mjs --origin http://127.0.0.1:P [--nodes ws://127.0.0.1:P/ws] \
//        --api http://127.0.0.1:INTERNAL --key API_KEY [--count 20] [--interval-ms 100] \
//        [--node ID] [--feeder ../feeder.mjs] [--artifacts DIR]

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { args, run, check, until, dashboardUrl, waitOpen, status } from './lib.mjs';

const SCENARIO = 'dashboard';
const opts = args(SCENARIO, {
  origin: { required: true },
  nodes: {},
  api: { required: true },
  key: { default: process.env.SWITCHBOARD_API_KEY },
  count: { default: '20' },
  'interval-ms': { default: '100' },
  node: {},
  feeder: { default: fileURLToPath(new URL('../feeder.mjs', import.meta.url)) },
  'wait-ms': { default: '10000' },
});
const WAIT = Number(opts['wait-ms']);
const N = Number(opts.count);

/** Runs the feeder to completion; resolves with its exit code and output tail. */
function feed() {
  const argv = [opts.feeder, '--api', opts.api, '--key', opts.key, '--count', String(N), '--interval-ms', opts['interval-ms']];
  return new Promise((resolve) => {
    const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    child.on('error', (e) => resolve({ code: -1, out: String(e) }));
    child.on('close', (code) => resolve({ code, out: out.slice(-600) }));
  });
}

const points = (page) => page.evaluate(() => {
  const el = document.querySelector('[data-testid="points"]');
  if (!el) return null;
  const n = Number((el.dataset.count ?? el.textContent).trim().match(/\d+/)?.[0]);
  return Number.isFinite(n) ? n : null;
});

await run(SCENARIO, opts, async ({ newPage, shot }) => {
  check(opts.key, '--key (or SWITCHBOARD_API_KEY) is required');
  const page = await newPage('dashboard');
  await page.goto(dashboardUrl(opts.origin, { nodes: opts.nodes ? opts.nodes.split(',') : [] }));
  const open = await waitOpen(page, WAIT, opts.node);
  const before = await points(page);
  check(before !== null, 'the page has no [data-testid="points"] counter');

  const feeder = await feed();
  check(feeder.code === 0, `the feeder exited with ${feeder.code}: ${feeder.out}`);
  const want = before + N;
  await until(`points reach ${want}`, WAIT, async () => ((await points(page)) >= want ? true : false));
  await new Promise((r) => setTimeout(r, 500));
  const after = await points(page);
  check(after === want, `points went to ${after}, expected ${want} (${before} before the feeder)`);

  // Let the chart draw its last frame before the screenshot.
  await page.waitForTimeout(200);
  await shot(page, 'dashboard.png');
  return { status: open, final_status: await status(page), points_before: before, points: after, count: N, feeder_exit: feeder.code };
});
