//! The Lua scripts the Redis router runs. Each one is atomic: numbering, storing and
//! routing a message happen in one step, and so do presence changes and the clean-up of
//! a dead node. Scripts build the backplane frames themselves (protobuf is concatenable:
//! a message's bytes plus its `epoch`/`offset` fields is the whole message), so a node
//! receives exactly what was stored.
//!
//! Key layout (`P` is the configured prefix, e.g. `sb:`):
//! - `P m:{channel}`  hash `e` epoch, `o` newest offset
//! - `P s:{channel}`  stream, entry id `<offset>-0`, fields `m` (pb Message) and `t` (ms)
//! - `P u:{user}`     hash conn id → "node since_ms"
//! - `P nc:{node}`    set "user conn" (what to clean up when the node dies)
//! - `P p:{room}`     hash conn id → "user node";  `P pu:{room}` hash user → count
//! - `P np:{node}`    set "room conn user"
//! - `P nodes`        sorted set node → lease deadline (ms, Redis clock); `P node:{node}` hash status
//! - `P a:{user}`     string "epoch offset", the inbox ack
//! - pub/sub: `P n:{node}` (a node's channel), `P r:{room}` (a room's channel)

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
-- Makes sure the channel has an epoch; returns epoch, newest offset.
local function ensure_meta(meta, stream, candidate, ttl)
  local e = redis.call('HGET', meta, 'e')
  if not e then
    redis.call('DEL', stream)
    redis.call('HSET', meta, 'e', candidate, 'o', 0)
    redis.call('PEXPIRE', meta, ttl)
    return candidate, 0
  end
  return e, tonumber(redis.call('HGET', meta, 'o')) or 0
end
"#;

/// KEYS: meta, stream, user hash (user channels; unused for rooms)
/// ARGV: message bytes without epoch/offset, max_len, max_age_ms, meta_ttl_ms,
///       epoch candidate, "u" | "r", room pub/sub channel, node channel prefix,
///       deadline (ms, Redis clock; 0 = none)
/// Returns {epoch, offset, nodes, online}; an error, having done nothing, when Redis
/// runs it after the deadline (the caller has answered 503 by then).
const PUBLISH: &str = r#"
local now = now_ms()
local deadline = tonumber(ARGV[9])
if deadline > 0 and now > deadline then
  return redis.error_reply('LATE the publish deadline passed before Redis ran it')
end
local meta, stream = KEYS[1], KEYS[2]
local ttl = tonumber(ARGV[4])
-- The cheap path of ensure_meta: one HGET and one HINCRBY for a channel that exists.
local epoch = redis.call('HGET', meta, 'e')
local offset
if not epoch then
  redis.call('DEL', stream)
  epoch = ARGV[5]
  offset = 1
  redis.call('HSET', meta, 'e', epoch, 'o', offset)
else
  offset = redis.call('HINCRBY', meta, 'o', 1)
end
redis.call('PEXPIRE', meta, ttl)
local m = ARGV[1] .. field(4, epoch) .. string.char(40) .. varint(offset)
local max_len = tonumber(ARGV[2])
if max_len > 0 then
  local max_age = tonumber(ARGV[3])
  redis.call('XADD', stream, 'MAXLEN', max_len, offset .. '-0', 'm', m, 't', now)
  -- Age trim from the head, one entry at a time (usually one read: the oldest is young).
  for _ = 1, 32 do
    local e = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
    if e and tonumber(e[2][4]) < now - max_age then
      redis.call('XDEL', stream, e[1])
    else
      break
    end
  end
  redis.call('PEXPIRE', stream, max_age)
end
local frame = field(1, field(1, m))
local nodes, online = 0, 0
if ARGV[6] == 'u' then
  local seen = {}
  for _, v in ipairs(redis.call('HVALS', KEYS[3])) do
    online = 1
    local node = split(v)[1]
    if node and not seen[node] then
      seen[node] = true
      redis.call('PUBLISH', ARGV[8] .. node, frame)
      nodes = nodes + 1
    end
  end
else
  nodes = redis.call('PUBLISH', ARGV[7], frame)
  if nodes > 0 then online = 1 end
end
return {epoch, offset, nodes, online}
"#;

/// KEYS: meta, stream
/// ARGV: epoch candidate, meta_ttl_ms, since epoch ('' = none), since offset, limit,
///       max_age_ms (0 = no history)
/// Returns {epoch, top, recovered (0/1), m1, m2, ...}.
const READ: &str = r#"
local meta, stream = KEYS[1], KEYS[2]
local epoch, top = ensure_meta(meta, stream, ARGV[1], tonumber(ARGV[2]))
local since_epoch, since = ARGV[3], tonumber(ARGV[4])
local limit, max_age = tonumber(ARGV[5]), tonumber(ARGV[6])
local cutoff = now_ms() - max_age
local out = {epoch, top, 1}
local start = '-'
if since_epoch ~= '' then
  if since_epoch ~= epoch then
    out[3] = 0
  elseif since > top then
    out[3] = 0
    return out
  elseif since == top then
    return out
  else
    start = (since + 1) .. '-0'
  end
end
if max_age <= 0 then
  if since_epoch ~= '' then out[3] = 0 end
  return out
end
local entries = redis.call('XRANGE', stream, start, '+', 'COUNT', limit + 1)
local expected = since + 1
local first = true
for _, e in ipairs(entries) do
  local offset = tonumber(string.match(e[1], '^(%d+)'))
  if tonumber(e[2][4]) >= cutoff then
    if first and since_epoch ~= '' and out[3] == 1 and offset ~= expected then
      out[3] = 0
    end
    first = false
    if #out - 3 < limit then out[#out + 1] = e[2][2] end
  end
end
if first and since_epoch ~= '' and out[3] == 1 then
  -- nothing retained after `since`, but the channel has newer messages
  out[3] = 0
end
return out
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

/// KEYS: user hash, node conn set, events stream
/// ARGV: conn, node, since_ms, user, events maxlen, deadline (ms, Redis clock; 0 = none)
/// An error, having done nothing, when Redis runs it after the deadline: the node has
/// refused the connection by then, and nothing would ever unregister it.
const REGISTER: &str = r#"
local deadline = tonumber(ARGV[6])
if deadline > 0 and now_ms() > deadline then
  return redis.error_reply('LATE the registration deadline passed before Redis ran it')
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3])
redis.call('SADD', KEYS[2], ARGV[4] .. ' ' .. ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'type', 'connect', 'user', ARGV[4],
  'conn', ARGV[1], 'node', ARGV[2], 'ts', now_ms())
return 1
"#;

/// KEYS: user hash, node conn set, events stream
/// ARGV: conn, node, user, events maxlen
const UNREGISTER: &str = r#"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SREM', KEYS[2], ARGV[3] .. ' ' .. ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'type', 'disconnect', 'user', ARGV[3],
  'conn', ARGV[1], 'node', ARGV[2], 'ts', now_ms(), 'reason', 'closed')
return 1
"#;

/// KEYS: nodes zset, node status hash
/// ARGV: node, lease_ms, connections, draining (0/1), since_ms
/// Returns {added, now_ms}: added is 1 when the node was not in the live set (first
/// heartbeat, reaped, or Redis lost its data) and the caller re-registers what it holds;
/// now_ms (Redis's clock) lets the caller measure its clock offset.
const HEARTBEAT: &str = r#"
local lease = tonumber(ARGV[2])
local now = now_ms()
local added = redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('HSET', KEYS[2], 'connections', ARGV[3], 'draining', ARGV[4], 'since_ms', ARGV[5])
redis.call('PEXPIRE', KEYS[2], lease * 2)
return {added, now}
"#;

/// KEYS: nodes zset, events stream
/// ARGV: key prefix, events maxlen, [a node to remove whatever its lease]
/// Removes every node whose lease passed: its connections (with synthetic disconnect
/// events) and its presence (with leave events). Returns the removed node ids. A node
/// starting passes its own id: a previous process under that id may have crashed and
/// left entries whose lease has not passed yet.
const REAP: &str = r#"
local P = ARGV[1]
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, 16)
if ARGV[3] and ARGV[3] ~= '' then dead[#dead + 1] = ARGV[3] end
for _, node in ipairs(dead) do
  redis.call('ZREM', KEYS[1], node)
  for _, member in ipairs(redis.call('SMEMBERS', P .. 'nc:' .. node)) do
    local p = split(member)
    if redis.call('HDEL', P .. 'u:' .. p[1], p[2]) == 1 then
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'type', 'disconnect',
        'user', p[1], 'conn', p[2], 'node', node, 'ts', now_ms(), 'reason', 'node_lost',
        'synthetic', '1')
    end
  end
  for _, member in ipairs(redis.call('SMEMBERS', P .. 'np:' .. node)) do
    local p = split(member)
    local room, conn, user = p[1], p[2], p[3]
    if redis.call('HDEL', P .. 'p:' .. room, conn) == 1 then
      local c = redis.call('HINCRBY', P .. 'pu:' .. room, user, -1)
      if c <= 0 then
        redis.call('HDEL', P .. 'pu:' .. room, user)
        redis.call('PUBLISH', P .. 'r:' .. room, presence_frame(room, user, 'leave'))
      end
    end
  end
  redis.call('DEL', P .. 'nc:' .. node, P .. 'np:' .. node, P .. 'node:' .. node)
end
return dead
"#;

/// KEYS: presence hash, presence users hash, node presence set
/// ARGV: conn, user, node, room, room pub/sub channel
const JOIN: &str = r#"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3]) == 0 then return 0 end
redis.call('SADD', KEYS[3], ARGV[4] .. ' ' .. ARGV[1] .. ' ' .. ARGV[2])
if redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 then
  redis.call('PUBLISH', ARGV[5], presence_frame(ARGV[4], ARGV[2], 'join'))
  return 1
end
return 0
"#;

/// KEYS: presence hash, presence users hash, node presence set
/// ARGV: conn, user, node, room, room pub/sub channel
const LEAVE: &str = r#"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SREM', KEYS[3], ARGV[4] .. ' ' .. ARGV[1] .. ' ' .. ARGV[2])
if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('PUBLISH', ARGV[5], presence_frame(ARGV[4], ARGV[2], 'leave'))
  return 1
end
return 0
"#;

/// KEYS: presence hash, presence users hash.  Returns {connections, user1, user2, ...}.
const PRESENCE: &str = r#"
local out = {redis.call('HLEN', KEYS[1])}
for _, u in ipairs(redis.call('HKEYS', KEYS[2])) do out[#out + 1] = u end
return out
"#;

/// KEYS: user hash.  ARGV: frame, node channel prefix.
/// Publishes the disconnect frame to every node holding the user; returns the number of
/// the user's connections.
const DISCONNECT: &str = r#"
local vals = redis.call('HVALS', KEYS[1])
local seen = {}
for _, v in ipairs(vals) do
  local node = split(v)[1]
  if node and not seen[node] then
    seen[node] = true
    redis.call('PUBLISH', ARGV[2] .. node, ARGV[1])
  end
end
return #vals
"#;

/// KEYS: nodes zset.  ARGV: key prefix.
/// Returns {node, connections, draining, since_ms, ...} for live nodes.
const NODES: &str = r#"
local out = {}
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now_ms(), '+inf')) do
  local h = redis.call('HMGET', ARGV[1] .. 'node:' .. node, 'connections', 'draining', 'since_ms')
  out[#out + 1] = node
  out[#out + 1] = h[1] or '0'
  out[#out + 1] = h[2] or '0'
  out[#out + 1] = h[3] or '0'
end
return out
"#;

/// The scripts, with the prelude, as fred `Script`s.
pub struct Scripts {
    pub publish: fred::types::scripts::Script,
    pub read: fred::types::scripts::Script,
    pub ack: fred::types::scripts::Script,
    pub register: fred::types::scripts::Script,
    pub unregister: fred::types::scripts::Script,
    pub heartbeat: fred::types::scripts::Script,
    pub reap: fred::types::scripts::Script,
    pub join: fred::types::scripts::Script,
    pub leave: fred::types::scripts::Script,
    pub presence: fred::types::scripts::Script,
    pub disconnect: fred::types::scripts::Script,
    pub nodes: fred::types::scripts::Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        let s = |body: &str| fred::types::scripts::Script::from_lua(format!("{PRELUDE}\n{body}"));
        Scripts {
            publish: s(PUBLISH),
            read: s(READ),
            ack: s(ACK),
            register: s(REGISTER),
            unregister: s(UNREGISTER),
            heartbeat: s(HEARTBEAT),
            reap: s(REAP),
            join: s(JOIN),
            leave: s(LEAVE),
            presence: s(PRESENCE),
            disconnect: s(DISCONNECT),
            nodes: s(NODES),
        }
    }
}
