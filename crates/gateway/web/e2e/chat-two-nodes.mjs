// Scenario 1: two pages chat through two different gateway nodes.
//
// Page A is served by node A and connects to node A; page B (phone-sized) is served by
// node B and connects to node B. Both join the same room; A sends, B sees it with A as
// the sender, then B answers and A sees it with B as the sender; both presence lists
// show both users. Screenshots: chat-a.png, chat-b.png.
//
//   node chat-two-nodes.mjs --a-origin http://127.0.0.1:P1 --a-ws ws://127.0.0.1:P1/ws \
//        --b-origin http://127.0.0.1:P2 --b-ws ws://127.0.0.1:P2/ws [--a-node ID] \
//        [--b-node ID] [--room NAME] [--user-a alice] [--user-b bob] [--artifacts DIR]

import {
  args, run, check, until, chatUrl, waitOpen, messages, presence, send, status,
} from './lib.mjs';

const SCENARIO = 'chat-two-nodes';
const opts = args(SCENARIO, {
  'a-origin': { required: true },
  'a-ws': { required: true },
  'b-origin': { required: true },
  'b-ws': { required: true },
  'a-node': {},
  'b-node': {},
  room: { default: 'e2e-chat' },
  'user-a': { default: 'alice' },
  'user-b': { default: 'bob' },
  'wait-ms': { default: '10000' },
});
const WAIT = Number(opts['wait-ms']);
const { room } = opts;
const [userA, userB] = [opts['user-a'], opts['user-b']];

await run(SCENARIO, opts, async ({ newPage, shot }) => {
  const a = await newPage('A');
  await a.goto(chatUrl(opts['a-origin'], { user: userA, room, nodes: [opts['a-ws']] }));
  const b = await newPage('B', { width: 390, height: 760 });
  await b.goto(chatUrl(opts['b-origin'], { user: userB, room, nodes: [opts['b-ws']] }));

  const statusA = await waitOpen(a, WAIT, opts['a-node']);
  const statusB = await waitOpen(b, WAIT, opts['b-node']);

  // Both see both in presence before anyone talks (B joined after A: A sees the join
  // event across nodes; B sees A in the room's presence when it subscribes).
  const both = (list) => list.includes(userA) && list.includes(userB);
  await until(`A's presence shows ${userA} and ${userB}`, WAIT, async () => both(await presence(a)));
  await until(`B's presence shows ${userA} and ${userB}`, WAIT, async () => both(await presence(b)));

  const textA = `hello from ${userA} on node A`;
  await send(a, textA);
  const seenByB = await until(`B sees "${textA}"`, WAIT, async () =>
    (await messages(b)).find((m) => m.text.includes(textA)));
  check(seenByB.from === userA, `B shows "${textA}" from ${JSON.stringify(seenByB.from)}, expected ${userA}`);

  const textB = `hi ${userA}, ${userB} here on node B`;
  await send(b, textB);
  const seenByA = await until(`A sees "${textB}"`, WAIT, async () =>
    (await messages(a)).find((m) => m.text.includes(textB)));
  check(seenByA.from === userB, `A shows "${textB}" from ${JSON.stringify(seenByA.from)}, expected ${userB}`);

  // Each side also shows both messages, in the same order with the same offsets.
  await until('both pages show both messages', WAIT, async () => {
    const [ma, mb] = [await messages(a), await messages(b)];
    return [textA, textB].every((t) => ma.some((m) => m.text.includes(t)) && mb.some((m) => m.text.includes(t)));
  });
  const [ma, mb] = [await messages(a), await messages(b)];
  const key = (list) => list.map((m) => `${m.offset}:${m.from}`).join(',');
  check(key(ma) === key(mb), `the two pages disagree: A ${key(ma)} / B ${key(mb)}`);

  const [pa, pb] = [await presence(a), await presence(b)];
  await shot(a, 'chat-two-nodes-a.png');
  await shot(b, 'chat-two-nodes-b.png');
  return {
    a: { status: statusA, final_status: await status(a), presence: pa, messages: ma },
    b: { status: statusB, final_status: await status(b), presence: pb, messages: mb },
  };
});
