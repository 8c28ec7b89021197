//! The Lua scripts. Each is atomic and touches the keys of one hash tag only, every key
//! declared (the layout is in [`keys`](super::keys)), so each runs on one slot of a
//! Redis Cluster. What spans slots (a node's registration, a reap) is a sequence of such
//! steps, ordered so that a crash between two leaves nothing a reaper cannot clean up.
//!
//! A stored message is its protobuf without `epoch`/`offset` (the stream's entry id and
//! the channel's meta give them back); the publish scripts send it live in a flat frame
//! (`D<epoch> <offset> <message>`), the others build protobuf backplane frames.

use super::client::Script;

/// Helpers prepended to every script.
const PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function varint(n)
  local s = ''
  while n >= 128 do
    s = s .. string.char(n % 128 + 128)
    n = math.floor(n / 128)
  end
  return s .. string.char(n)
end
local function field(num, bytes)
  return string.char(num * 8 + 2) .. varint(#bytes) .. bytes
end
local function split(s)
  local out = {}
  for w in string.gmatch(s, '%S+') do out[#out + 1] = w end
  return out
end
-- BackplaneFrame{presence: PresenceEvent{channel, user, event}}
local function presence_frame(room, user, event)
  return field(2, field(1, room) .. field(2, user) .. field(3, event))
end
"#;

/// The deadline check at the top of both publish scripts: an error, having done
/// nothing, when Redis runs the script after the deadline (ms, Redis clock; '0' = none)
/// — the caller answered 503 by then, and a 503 means not stored.
const DEADLINE: &str = r#"
if ARGV[DEADLINE_ARG] ~= '0' then
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[DEADLINE_ARG]) then
    return redis.error_reply('LATE the publish deadline passed before Redis ran it')
  end
end
"#;

/// The idempotency check in front of a keyed publish (KEYS[IDEM_KEY] is the key): when the
/// key was seen within its window, answers the first publish's `{epoch, offset,
/// receivers, 1}` having done nothing else.
const IDEM_CHECK: &str = r#"
local seen = redis.call('GET', KEYS[IDEM_KEY])
if seen then
  local e, o, r = string.match(seen, '^(%S+) (%S+) (%S+)$')
  return {e, tonumber(o) or o, tonumber(r), 1}
end
"#;

/// Replaces the answer of a publish script in its keyed variant: the answer is
/// remembered under the idempotency key for the window (ARGV[IDEM_WINDOW], ms) first.
const IDEM_STORE: &str = r#"
local out = {ANSWER}
redis.call('SET', KEYS[IDEM_KEY], out[1] .. ' ' .. out[2] .. ' ' .. out[3], 'PX', ARGV[IDEM_WINDOW])
return out
"#;

/// Publishes to a channel that keeps history.
///
/// KEYS: meta, stream.
/// ARGV: message (protobuf, without epoch/offset), max_len, key TTL (ms), ts (ms),
///       epoch candidate, live shard channel, deadline.
/// Returns {epoch, stream entry id `0-<offset>`, receivers}.
///
/// The offset is the stream's own sequence (`XADD … 0-*`), so a publish is one append.
/// A new epoch starts when the channel has none, when its stream is gone although it
/// was written (expired or lost), or when it numbered messages without history before.
/// The TTLs of both keys are set when they are created and renewed only once half of
/// the TTL has passed (`r`), not on every publish. The live frame is flat (see
/// `frames::decode`): no protobuf nesting to build in Lua.
const PUBLISH: &str = r#"
local h = redis.call('HMGET', KEYS[1], 'e', 'w', 'r', 'o')
local epoch, id = h[1], nil
if epoch and h[2] then
  id = redis.call('XADD', KEYS[2], 'NOMKSTREAM', 'MAXLEN', '~', ARGV[2], '0-*',
    'd', ARGV[1], 't', ARGV[4])
end
if not id then
  if not epoch or h[2] or h[4] then epoch = ARGV[5] end
  redis.call('DEL', KEYS[2])
  redis.call('HDEL', KEYS[1], 'o')
  id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '0-*', 'd', ARGV[1], 't', ARGV[4])
  h[3] = false
end
if not h[3] or tonumber(ARGV[4]) >= tonumber(h[3]) then
  local ttl = tonumber(ARGV[3])
  redis.call('HSET', KEYS[1], 'e', epoch, 'w', 1, 'r', tonumber(ARGV[4]) + math.floor(ttl / 2))
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return {epoch, id, redis.call('SPUBLISH', ARGV[6], 'D' .. epoch .. ' ' .. id .. ' ' .. ARGV[1])}
"#;

/// Numbers and publishes a message of a channel without history.
///
/// KEYS: meta.
/// ARGV: message, key TTL (ms), ts (ms), epoch candidate, live shard channel, deadline.
/// Returns {epoch, offset, receivers}.
const NUMBER: &str = r#"
local h = redis.call('HMGET', KEYS[1], 'e', 'r', 'w')
local epoch, offset = h[1], 1
if not epoch or h[3] then
  epoch = ARGV[4]
  local ttl = tonumber(ARGV[2])
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 1, 'r', tonumber(ARGV[3]) + math.floor(ttl / 2))
  redis.call('PEXPIRE', KEYS[1], ttl)
else
  offset = redis.call('HINCRBY', KEYS[1], 'o', 1)
  if tonumber(ARGV[3]) >= tonumber(h[2] or 0) then
    local ttl = tonumber(ARGV[2])
    redis.call('HSET', KEYS[1], 'r', tonumber(ARGV[3]) + math.floor(ttl / 2))
    redis.call('PEXPIRE', KEYS[1], ttl)
  end
end
return {epoch, offset, redis.call('SPUBLISH', ARGV[5], 'D' .. epoch .. ' ' .. offset .. ' ' .. ARGV[1])}
"#;

/// The keyed variant of a publish script (`body`): the idempotency check after the
/// deadline's, and the answer stored under the key. The key is KEYS[`key`], the window
/// ARGV[`window`]; the script's own keys and arguments come first, unchanged.
fn keyed(body: &str, key: usize, window: usize) -> String {
    let (head, answer) = body
        .trim_end()
        .rsplit_once("return {")
        .expect("a publish script ends with its answer");
    let answer = answer.strip_suffix('}').expect("the answer is a table");
    let check = IDEM_CHECK.replace("IDEM_KEY", &key.to_string());
    let store = IDEM_STORE
        .replace("ANSWER", answer)
        .replace("IDEM_KEY", &key.to_string())
        .replace("IDEM_WINDOW", &window.to_string());
    format!("{check}{head}{store}")
}

/// Reads a channel's position and history.
///
/// KEYS: meta, stream.
/// ARGV: epoch candidate, key TTL (ms), since epoch ('' = none), since offset, limit,
///       oldest ts kept (ms), max_len (0 = no history), now (ms).
/// Returns {epoch, top, recovered (0/1), offset1, message1, offset2, message2, …}.
///
/// History is bounded exactly as documented even though appends trim approximately
/// (`MAXLEN ~`): offsets at or below `top - max_len` and entries older than the age
/// bound count as gone. A channel without an epoch gets one (its first publish keeps it).
const READ: &str = r#"
local meta, stream = KEYS[1], KEYS[2]
local h = redis.call('HMGET', meta, 'e', 'w', 'o')
local epoch = h[1]
local max_len = tonumber(ARGV[7])
local since_epoch, since = ARGV[3], tonumber(ARGV[4])
if not epoch then
  epoch = ARGV[1]
  local ttl = tonumber(ARGV[2])
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'e', epoch, 'r', tonumber(ARGV[8]) + math.floor(ttl / 2))
  redis.call('PEXPIRE', meta, ttl)
  h = {epoch, false, false}
end
local top = 0
if max_len > 0 then
  if h[2] then
    local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1]
    if last then top = tonumber(string.sub(last[1], 3)) end
  end
else
  top = tonumber(h[3] or 0)
end
local out = {epoch, top, 1}
if since_epoch ~= '' then
  if since_epoch ~= epoch then
    out[3] = 0
  elseif since > top then
    out[3] = 0
    return out
  elseif since == top then
    return out
  end
end
if max_len <= 0 then
  if since_epoch ~= '' then out[3] = 0 end
  return out
end
local limit = tonumber(ARGV[5])
local floor = math.max(top - max_len, 0)
local from = floor + 1
if since_epoch == epoch and out[3] == 1 then
  if since < floor then out[3] = 0 else from = since + 1 end
end
if limit <= 0 then return out end
local cutoff = tonumber(ARGV[6])
local first, expired = true, nil
local start = '0-' .. from
for _ = 1, 64 do
  local entries = redis.call('XRANGE', stream, start, '+', 'COUNT', limit)
  for _, e in ipairs(entries) do
    local offset = tonumber(string.sub(e[1], 3))
    if tonumber(e[2][4]) >= cutoff then
      if first and since_epoch == epoch and out[3] == 1 and offset ~= from then
        out[3] = 0
      end
      first = false
      if (#out - 3) / 2 < limit then
        out[#out + 1] = offset
        out[#out + 1] = e[2][2]
      end
    else
      expired = offset
    end
  end
  if (#out - 3) / 2 >= limit or #entries < limit then break end
  start = '(' .. entries[#entries][1]
end
if first and since_epoch == epoch and out[3] == 1 and top > since then
  out[3] = 0
end
if expired then
  -- Entries past the age bound are never returned; give their memory back (the newest
  -- entry stays: it is the channel's top).
  redis.call('XTRIM', stream, 'MINID', '~', '0-' .. math.min(expired + 1, top))
end
return out
"#;

/// KEYS: meta.  ARGV: the diverged epoch, the new one.
/// A new epoch for the channel, unless it already left the old one. The stream stays:
/// its entries do not carry their epoch, so they are the new epoch's.
const RESET: &str = r#"
if redis.call('HGET', KEYS[1], 'e') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'e', ARGV[2])
  return 1
end
return 0
"#;

/// KEYS: ack key.  ARGV: epoch, offset, ttl_ms.
const ACK: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local p = split(cur)
  if p[1] == ARGV[1] and tonumber(p[2]) >= tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'PX', ARGV[3])
return 1
"#;

/// KEYS: the user's registry hash.  ARGV: conn, "node since_ms", deadline,
/// max_per_user (0 = no cap).
/// Returns 1 when registered, 0 (having done nothing) when the user already has
/// max_per_user entries and this connection is not one of them: the check and the
/// write are one atomic step, so concurrent registrations never pass the cap.
/// An error, having done nothing, when Redis runs it after the deadline: the node has
/// refused the connection by then, and nothing would ever unregister it.
const REGISTER: &str = r#"
local deadline = tonumber(ARGV[3])
if deadline > 0 and now_ms() > deadline then
  return redis.error_reply('LATE the registration deadline passed before Redis ran it')
end
local cap = tonumber(ARGV[4])
if cap > 0 and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0
    and redis.call('HLEN', KEYS[1]) >= cap then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"#;

/// KEYS: the user's registry hash.  ARGV: conn, node.
/// Removes the entry if it belongs to `node` (a reaper removing a dead node's entry).
const REAP_CONN: &str = r#"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and split(v)[1] == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
"#;

/// KEYS: nodes, status, reaping.  ARGV: node, lease_ms, status.
/// Returns {added, now_ms, being_reaped}: added is 1 when the node was not in the live
/// set (first heartbeat, reaped, or Redis lost its data); now_ms is Redis's clock;
/// being_reaped is 1 while a reaper still cleans up after this node (re-registering
/// before it is done would have the reaper remove the new entries).
const HEARTBEAT: &str = r#"
local now = now_ms()
local added = redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
local reaping = redis.call('ZSCORE', KEYS[3], ARGV[1]) and 1 or 0
return {added, now, reaping}
"#;

/// KEYS: nodes, reaping, status.  ARGV: claim_ms, [a node to claim whatever its lease].
/// Claims nodes whose lease passed (and claims whose reaper died): the caller cleans up
/// what they left and then removes them from `reaping`. Returns the claimed node ids.
const CLAIM: &str = r#"
local now = now_ms()
local claim = now + tonumber(ARGV[1])
local out = {}
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 16)
if ARGV[2] and ARGV[2] ~= '' then dead[#dead + 1] = ARGV[2] end
for _, node in ipairs(dead) do
  redis.call('ZREM', KEYS[1], node)
  redis.call('HDEL', KEYS[3], node)
  redis.call('ZADD', KEYS[2], claim, node)
  out[#out + 1] = node
end
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 16)) do
  redis.call('ZADD', KEYS[2], claim, node)
  out[#out + 1] = node
end
return out
"#;

/// KEYS: presence hash, presence users hash.  ARGV: conn, user, node, live channel, room.
/// Returns 1 when this was the user's first connection in the room (join published).
const JOIN: &str = r#"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 then
  redis.call('SPUBLISH', ARGV[4], presence_frame(ARGV[5], ARGV[2], 'join'))
  return 1
end
return 0
"#;

/// KEYS: presence hash, presence users hash.  ARGV: conn, user, live channel, room.
/// Returns 1 when this was the user's last connection in the room (leave published).
const LEAVE: &str = r#"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('SPUBLISH', ARGV[3], presence_frame(ARGV[4], ARGV[2], 'leave'))
  return 1
end
return 0
"#;

/// KEYS: presence hash, presence users hash.  Returns {connections, user1, user2, …}.
const PRESENCE: &str = r#"
local out = {redis.call('HLEN', KEYS[1])}
for _, u in ipairs(redis.call('HKEYS', KEYS[2])) do out[#out + 1] = u end
return out
"#;

/// KEYS: the user's registry hash.  ARGV: live channel, frame.
/// Publishes the disconnect frame to the nodes holding the user; returns the number of
/// the user's connections.
const DISCONNECT: &str = r#"
local n = redis.call('HLEN', KEYS[1])
redis.call('SPUBLISH', ARGV[1], ARGV[2])
return n
"#;

/// KEYS: nodes, status.  Returns {node, status, …} for live nodes.
const NODES: &str = r#"
local out = {}
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now_ms(), '+inf')) do
  out[#out + 1] = node
  out[#out + 1] = redis.call('HGET', KEYS[2], node) or ''
end
return out
"#;

/// The scripts, with the prelude.
pub(super) struct Scripts {
    pub publish: Script,
    pub number: Script,
    /// `publish` and `number` with an idempotency key (KEYS: theirs, then the key;
    /// ARGV: theirs, then the window in ms).
    pub publish_keyed: Script,
    pub number_keyed: Script,
    pub read: Script,
    pub ack: Script,
    pub reset: Script,
    pub register: Script,
    pub reap_conn: Script,
    pub heartbeat: Script,
    pub claim: Script,
    pub join: Script,
    pub leave: Script,
    pub presence: Script,
    pub disconnect: Script,
    pub nodes: Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        let s = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        // The publish scripts run per message: no prelude (its helper closures cost an
        // allocation each per call), the deadline check inlined.
        let lean = |body: &str, deadline_arg: usize| {
            let check = DEADLINE.replace("DEADLINE_ARG", &deadline_arg.to_string());
            Script::new(&format!("{check}{body}"))
        };
        Scripts {
            publish: lean(PUBLISH, 7),
            number: lean(NUMBER, 6),
            publish_keyed: lean(&keyed(PUBLISH, 3, 8), 7),
            number_keyed: lean(&keyed(NUMBER, 2, 7), 6),
            read: s(READ),
            ack: s(ACK),
            reset: s(RESET),
            register: s(REGISTER),
            reap_conn: s(REAP_CONN),
            heartbeat: s(HEARTBEAT),
            claim: s(CLAIM),
            join: s(JOIN),
            leave: s(LEAVE),
            presence: s(PRESENCE),
            disconnect: s(DISCONNECT),
            nodes: s(NODES),
        }
    }
}
