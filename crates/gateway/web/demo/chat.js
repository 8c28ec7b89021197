// Switchboard demo: a chat room with presence, history after a reload and direct messages.
// Plain ES module, no build step; the only import is the gateway's own client library.
//
// URL parameters (all optional):
//   ?user=NAME   join as NAME without asking (the end-to-end tests use this)
//   ?room=NAME   the room (default lobby → channel room:lobby)
//   ?nodes=ws://a/ws,ws://b/ws   connect to these nodes (rotating on reconnect) instead of
//                this page's own origin
//
// How it works:
// - The token comes from the development endpoint GET /demo/token?user=NAME (only with
//   --demo). The client library calls it again before the token expires and on reconnect.
// - Join: connect, subscribe to the room, then load the room's recent history from
//   GET /demo/history and who is in the room from GET /demo/presence (both with the
//   page's token). Live messages and history are merged by (epoch, offset): nothing is
//   shown twice and room messages stay in offset order. A reload does the same, so the
//   history is back after a reload (when the node keeps room history: --history).
// - Presence: the snapshot plus the live join/leave events (events that arrive while the
//   snapshot loads are applied on top of it). Reloaded after every reconnect.
// - Direct messages: type a name in "To" (or click someone in the presence list); the
//   message goes to user:NAME. Incoming ones arrive on the personal channel user:ME.

import { Switchboard } from '/switchboard.js';

const USER_RE = /^[A-Za-z0-9_.:@=-]{1,64}$/;
const HISTORY_LIMIT = 50;
const STORAGE_KEY = 'switchboard-demo-user';

const params = new URLSearchParams(location.search);
const roomName = (params.get('room') || 'lobby').replace(/^room:/, '');
const room = `room:${roomName}`;
const sameOrigin = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`;
const nodes = (params.get('nodes') || '')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);
const urls = nodes.length ? nodes : [sameOrigin];

const $ = (id) => document.getElementById(id);
const els = {
  title: $('room-title'),
  status: $('status'),
  join: $('join'),
  joinForm: $('join-form'),
  nameInput: $('name-input'),
  joinError: $('join-error'),
  chat: $('chat'),
  list: $('messages'),
  empty: $('empty'),
  composer: $('composer'),
  toBox: $('to-box'),
  toInput: $('to-input'),
  toClear: $('to-clear'),
  people: $('people'),
  input: $('message-input'),
  presence: $('presence'),
  onlineCount: $('online-count'),
};

let me = null;
let sb = null;
let token = null;
/** Rendered messages by key (channel:epoch:offset), for de-duplication. */
const shown = new Set();
/** Who is in the room. */
let users = new Set();
/** Presence events that arrive while a snapshot loads (applied on top of it). */
let presenceBuffer = null;

// ---- start -------------------------------------------------------------------------

els.title.textContent = `#${roomName}`;
els.toInput.placeholder = `#${roomName}`;
els.input.placeholder = `Message #${roomName}`;

const initial = params.get('user') || sessionStorage.getItem(STORAGE_KEY);
if (initial && USER_RE.test(initial)) {
  start(initial);
} else {
  els.join.hidden = false;
  if (initial) els.nameInput.value = initial;
  els.nameInput.focus();
}

els.joinForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const name = els.nameInput.value.trim().replace(/\s+/g, '-');
  if (!USER_RE.test(name)) {
    els.joinError.textContent = 'Use 1–64 letters, digits or _ . : @ = -';
    return;
  }
  sessionStorage.setItem(STORAGE_KEY, name);
  start(name);
});

async function start(name) {
  me = name;
  els.join.hidden = true;
  els.chat.hidden = false;
  document.title = `${name} · #${roomName} · Switchboard`;
  els.title.textContent = `#${roomName} · ${name}`;

  sb = new Switchboard({ urls, token: fetchToken, autoAck: true });
  sb.on('state', renderStatus);
  sb.on('welcome', onWelcome);
  sb.on('message', onMessage);
  sb.on('presence', onPresence);
  sb.on('resync', onResync);
  sb.on('goaway', (g) => notice(`${sb.node ?? 'The node'} is going away (${g.reason}); moving to another node…`, 'warn'));
  sb.on('error', (e) => {
    console.warn('switchboard:', e.code ?? e, e.message ?? '');
    els.status.title = `last error: ${e.code ?? ''} ${e.message ?? ''}`.trim();
  });
  addEventListener('pagehide', () => sb.close());
  renderStatus(sb.state);

  await sb.connect();
  try {
    await sb.subscribe(room);
    await Promise.all([loadHistory(), loadPresence()]);
  } catch (e) {
    notice(`Could not join ${room}: ${e.message}`, 'warn');
  }
  els.input.focus();
}

// ---- tokens and the demo endpoints -------------------------------------------------

async function fetchToken() {
  const res = await fetch(`/demo/token?user=${encodeURIComponent(me)}`, { cache: 'no-store' });
  const body = await res.json().catch(() => ({}));
  if (!res.ok || !body.token) throw new Error(body.message || `GET /demo/token: HTTP ${res.status}`);
  token = body.token;
  return token;
}

/** GET a demo endpoint with the page's token (fetching a fresh one once on 401). */
async function demoGet(path) {
  for (let attempt = 0; ; attempt++) {
    if (!token || attempt > 0) await fetchToken();
    const res = await fetch(path, { headers: { authorization: `Bearer ${token}` }, cache: 'no-store' });
    const body = await res.json().catch(() => ({}));
    if (res.ok) return body;
    if (res.status !== 401 || attempt > 0) throw new Error(body.message || `GET ${path}: HTTP ${res.status}`);
  }
}

/** The room's recent messages (only there when the node keeps room history). */
async function loadHistory() {
  const h = await demoGet(`/demo/history?channel=${encodeURIComponent(room)}&limit=${HISTORY_LIMIT}`);
  const stick = nearBottom();
  for (const m of h.messages) addMessage(m);
  if (stick) scrollDown();
}

async function loadPresence() {
  const buffer = [];
  presenceBuffer = buffer;
  try {
    const p = await demoGet(`/demo/presence?channel=${encodeURIComponent(room)}`);
    users = new Set(p.users);
    for (const e of buffer) applyPresence(e);
  } finally {
    if (presenceBuffer === buffer) presenceBuffer = null;
  }
  renderPresence();
}

// ---- events ---------------------------------------------------------------------------

let welcomed = false;

function onWelcome() {
  renderStatus(sb.state);
  if (!welcomed) {
    welcomed = true;
    return;
  }
  // A reconnect: the client re-subscribes the room with `since` (the messages missed
  // meanwhile follow); refresh who is there once the room is confirmed again.
  sb.subscribe(room)
    .then(() => loadPresence())
    .catch((e) => console.warn('re-subscribe', e));
}

function onMessage(m) {
  if (m.channel !== room && m.channel !== `user:${me}`) return;
  const stick = nearBottom() || m.from === me;
  addMessage(m);
  if (stick) scrollDown();
}

function onPresence(e) {
  if (e.channel !== room) return;
  if (presenceBuffer) presenceBuffer.push(e);
  applyPresence(e);
  renderPresence();
  if (e.user !== me) notice(`${e.user} ${e.event === 'join' ? 'joined' : 'left'}`);
}

function applyPresence(e) {
  if (e.event === 'join') users.add(e.user);
  else if (e.event === 'leave') users.delete(e.user);
}

function onResync({ channel }) {
  if (channel === room) {
    notice('Some messages could not be recovered; reloading the room’s history.', 'warn');
    loadHistory().catch((e) => console.warn('history', e));
  } else {
    notice('Some direct messages could not be recovered.', 'warn');
  }
}

// ---- sending ------------------------------------------------------------------------

els.composer.addEventListener('submit', async (e) => {
  e.preventDefault();
  if (!sb) return;
  const text = els.input.value.trim();
  if (!text) return;
  const to = els.toInput.value.trim().replace(/^@/, '').replace(/^user:/, '');
  if (to && !/^#/.test(to) && !USER_RE.test(to)) {
    notice(`“${to}” is not a user name`, 'warn');
    return;
  }
  const dm = to && !/^#/.test(to) ? to : null;
  els.input.value = '';
  els.input.focus();
  try {
    if (dm) {
      const at = await sb.publish(`user:${dm}`, { text });
      // Our own copy: the message went to user:<dm>, not to us (unless we wrote to ourselves).
      if (dm !== me) {
        addMessage({ channel: `user:${dm}`, from: me, epoch: at.epoch, offset: at.offset, ts: Date.now(), data: { text } }, dm);
        scrollDown();
      }
    } else {
      await sb.publish(room, { text });
    }
  } catch (err) {
    notice(`Not sent: ${err.message || err.code}`, 'warn');
    if (!els.input.value) els.input.value = text;
  }
});

function setRecipient(name) {
  els.toInput.value = name && name !== me ? name : '';
  onRecipientChange();
  els.input.focus();
}

function onRecipientChange() {
  const to = els.toInput.value.trim().replace(/^@/, '');
  const dm = Boolean(to) && !to.startsWith('#');
  els.toBox.classList.toggle('dm', dm);
  els.toClear.hidden = !to;
  els.input.placeholder = dm ? `Message @${to}` : `Message #${roomName}`;
}

els.toInput.addEventListener('input', onRecipientChange);
els.toClear.addEventListener('click', () => setRecipient(''));

// ---- rendering ----------------------------------------------------------------------

function renderStatus(state) {
  const s = state || sb?.state || 'closed';
  const node = s === 'open' ? sb?.node : null;
  els.status.dataset.state = s;
  if (node) els.status.dataset.node = node;
  else delete els.status.dataset.node;
  els.status.textContent = node ? `${s} · ${node}` : s;
}

/** Adds a message frame unless it is already shown. Room messages are kept in offset
 * order within their epoch; direct messages are appended. `outTo` marks our own copy of a
 * direct message we sent. */
function addMessage(m, outTo) {
  const key = `${m.channel}:${m.epoch}:${m.offset}`;
  if (shown.has(key)) return;
  shown.add(key);
  els.empty.hidden = true;

  const isRoom = m.channel === room;
  const li = document.createElement('li');
  li.className = 'msg';
  li.setAttribute('data-testid', 'message');
  li.dataset.channel = m.channel;
  li.dataset.epoch = m.epoch;
  li.dataset.offset = String(m.offset);
  if (m.from) li.dataset.from = m.from;
  li.dataset.kind = isRoom ? 'room' : outTo ? 'dm-out' : 'dm-in';
  if (m.from === me) li.classList.add('mine');
  if (!isRoom) li.classList.add('dm');

  const sender = m.from || 'server';
  const avatar = document.createElement('div');
  avatar.className = 'avatar';
  avatar.style.background = colorOf(sender);
  avatar.textContent = sender.slice(0, 1);
  avatar.setAttribute('aria-hidden', 'true');

  const bubble = document.createElement('div');
  bubble.className = 'bubble';
  const meta = document.createElement('div');
  meta.className = 'meta';
  const from = document.createElement('span');
  from.className = 'from';
  from.textContent = m.from === me ? `${sender} (you)` : sender;
  meta.append(from);
  if (!isRoom) {
    const tag = document.createElement('span');
    tag.className = 'tag';
    tag.textContent = outTo ? `direct → ${outTo}` : 'direct';
    meta.append(tag);
  }
  const time = document.createElement('time');
  const when = new Date(m.ts || Date.now());
  time.dateTime = when.toISOString();
  time.textContent = formatTime(when);
  time.title = when.toLocaleString();
  meta.append(time);

  const text = document.createElement('div');
  text.className = 'text';
  text.setAttribute('data-testid', 'message-text');
  text.textContent = messageText(m);
  bubble.append(meta, text);
  li.append(avatar, bubble);

  if (isRoom) {
    const after = [...els.list.querySelectorAll('[data-kind="room"]')].find(
      (el) => el.dataset.epoch === m.epoch && Number(el.dataset.offset) > m.offset,
    );
    if (after) {
      els.list.insertBefore(li, after);
      return;
    }
  }
  els.list.append(li);
}

function messageText(m) {
  const d = m.data;
  if (d && typeof d === 'object' && typeof d.text === 'string') return d.text;
  if (typeof d === 'string') return d;
  if (m.data_b64 !== undefined) return `(${Math.floor((m.data_b64.length * 3) / 4)} bytes of binary data)`;
  return JSON.stringify(d);
}

function notice(text, kind) {
  els.empty.hidden = true;
  const stick = nearBottom();
  const li = document.createElement('li');
  li.className = `notice${kind ? ` ${kind}` : ''}`;
  li.setAttribute('data-testid', 'notice');
  li.textContent = text;
  els.list.append(li);
  if (stick) scrollDown();
}

function renderPresence() {
  if (sb?.state === 'open') users.add(me);
  const sorted = [...users].sort((a, b) => (a === me ? -1 : b === me ? 1 : a.localeCompare(b)));
  els.presence.replaceChildren(
    ...sorted.map((user) => {
      const li = document.createElement('li');
      li.setAttribute('data-testid', 'presence-user');
      li.dataset.user = user;
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'chip';
      button.title = user === me ? 'you' : `Send ${user} a direct message`;
      const avatar = document.createElement('span');
      avatar.className = 'avatar';
      avatar.style.background = colorOf(user);
      avatar.textContent = user.slice(0, 1);
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = user;
      button.append(avatar, name);
      if (user === me) {
        const you = document.createElement('span');
        you.className = 'you';
        you.textContent = 'you';
        button.append(you);
      }
      button.addEventListener('click', () => setRecipient(user));
      li.append(button);
      return li;
    }),
  );
  els.onlineCount.textContent = String(sorted.length);
  els.people.replaceChildren(
    ...sorted
      .filter((u) => u !== me)
      .map((u) => {
        const o = document.createElement('option');
        o.value = u;
        return o;
      }),
  );
}

function nearBottom() {
  const l = els.list;
  return l.scrollHeight - l.scrollTop - l.clientHeight < 80;
}

function scrollDown() {
  els.list.scrollTop = els.list.scrollHeight;
}

function formatTime(d) {
  const sameDay = d.toDateString() === new Date().toDateString();
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return sameDay ? time : `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${time}`;
}

function colorOf(name) {
  let h = 0;
  for (const c of name) h = (h * 31 + c.codePointAt(0)) % 360;
  return `hsl(${h} 55% 50%)`;
}
