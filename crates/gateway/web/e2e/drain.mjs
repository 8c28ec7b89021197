// Scenario 2: a page survives a node drain.
//
// The chat page gets both nodes' URLs and is connected to the first one. The scenario
// then talks to whoever drives it over stdout/stdin:
//
//   1. it prints   {"ready":true,"node":"<first node id>","status":…}   once the page is open
//      on the first node and subscribed to the room (its own user is in presence);
//   2. the driver publishes numbered messages ({"seq":n,"text":"tick n"}, n = 1, 2, …) to
//      the room through the server API of a node that stays up, SIGTERMs the first node
//      while doing so, keeps publishing after it exited, and then writes one line
//      {"expect": N} on the scenario's stdin (N = how many it published);
//   3. the scenario waits until the page is open on the second node and shows N messages,
//      then checks that it shows every message exactly once in order: ticks 1..N, offsets
//      consecutive (no gap, no duplicate). Screenshot: drain-chat.png.
//
//   node drain.mjs --origin http://127.0.0.1:P2 --nodes ws://127.0.0.1:P1/ws,ws://127.0.0.1:P2/ws \
//        --first-node ID1 --second-node ID2 [--room NAME] [--user NAME] [--artifacts DIR]

import { createInterface } from 'node:readline';
import {
  args, run, check, until, chatUrl, waitOpen, messages, presence, status, recordStatus, statusLog, notices,
} from './lib.mjs';

const SCENARIO = 'drain';
const opts = args(SCENARIO, {
  origin: { required: true },
  nodes: { required: true },
  'first-node': { required: true },
  'second-node': { required: true },
  room: { default: 'e2e-drain' },
  user: { default: 'dana' },
  'wait-ms': { default: '15000' },
});
const WAIT = Number(opts['wait-ms']);

/** The first line on stdin, parsed as JSON. */
function expectLine() {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: process.stdin });
    let settled = false;
    rl.once('line', (line) => {
      settled = true;
      rl.close();
      try {
        resolve(JSON.parse(line));
      } catch {
        reject(new Error(`bad line on stdin: ${line}`));
      }
    });
    rl.once('close', () => {
      if (!settled) reject(new Error('stdin closed before the {"expect":N} line'));
    });
  });
}

await run(SCENARIO, opts, async ({ newPage, shot, log }) => {
  const page = await newPage('page');
  const nodes = opts.nodes.split(',');
  await page.goto(chatUrl(opts.origin, { user: opts.user, room: opts.room, nodes }));
  const first = await waitOpen(page, WAIT, opts['first-node']);
  await until(`presence shows ${opts.user} (subscribed)`, WAIT, async () => (await presence(page)).includes(opts.user));
  await recordStatus(page);
  process.stdout.write(`${JSON.stringify({ ready: true, node: opts['first-node'], status: first })}\n`);

  const { expect } = await expectLine();
  log(`driver published ${expect} messages`);
  check(Number.isInteger(expect) && expect > 0, `bad expect count ${expect}`);

  const second = await waitOpen(page, WAIT, opts['second-node']);
  const shown = await until(`the page shows ${expect} messages`, WAIT, async () => {
    const list = await messages(page);
    return list.length >= expect ? list : false;
  });
  // Nothing more may arrive (a late duplicate would).
  await new Promise((r) => setTimeout(r, 500));
  const list = await messages(page);
  check(list.length === shown.length, `more messages arrived after ${shown.length}: ${list.length}`);

  const ticks = list.map((m) => Number(m.text.match(/tick (\d+)/)?.[1] ?? NaN));
  const offsets = list.map((m) => m.offset);
  const wanted = Array.from({ length: expect }, (_, i) => i + 1);
  check(list.length === expect, `the page shows ${list.length} messages, ${expect} were published: ticks ${ticks.join(',')}`);
  check(ticks.every((t, i) => t === wanted[i]), `ticks out of order, missing or doubled: ${ticks.join(',')}`);
  check(offsets.every((o) => Number.isInteger(o)), `a message without data-offset: ${JSON.stringify(offsets)}`);
  check(offsets.every((o, i) => i === 0 || o === offsets[i - 1] + 1), `offsets not consecutive: ${offsets.join(',')}`);

  // Show the moment of the move: the page's notice about the goaway, amid the ticks.
  await page.evaluate(() => {
    const all = [...document.querySelectorAll('[data-testid="notice"]')];
    const moved = all.find((el) => /going away|goaway|drain/i.test(el.textContent)) ?? all[all.length - 1];
    moved?.scrollIntoView({ block: 'center' });
  });
  await shot(page, 'drain-chat.png');
  return {
    first_status: first,
    final_status: second,
    status_log: await statusLog(page),
    presence: await presence(page),
    count: list.length,
    ticks,
    offsets,
    froms: [...new Set(list.map((m) => m.from))],
    notices: await notices(page),
    final: await status(page),
  };
});
