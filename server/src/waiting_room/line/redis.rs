//! The line in Redis: one set of keys per onsale, every change one Lua script.
//!
//! Keys (`P` is the deployment's prefix; the braces put one onsale's keys in one Cluster slot):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:wr:{o}:status` | string | the onsale's status, mirrored by its controller |
//! | `P:wr:{o}:seq` | string | the last sequence handed out |
//! | `P:wr:{o}:places` | hash | user → `placeid:seq` |
//! | `P:wr:{o}:owners` | hash | place id → user |
//! | `P:wr:{o}:pre` | set | undrawn pre-queue place ids |
//! | `P:wr:{o}:line` | sorted set | waiting users by sequence |
//! | `P:wr:{o}:presence` | hash | user → attached connections |
//! | `P:wr:{o}:absent` | sorted set | users away, by grace deadline |
//! | `P:wr:{o}:gone` | sorted set | sequences that left while waiting, above the cursor |
//! | `P:wr:{o}:admitted` | sorted set | admitted users, by admission end |
//! | `P:wr:{o}:noshow` | sorted set | admitted users who were away, by show-up deadline |
//! | `P:wr:{o}:meta` | hash | `cursor`, `admitted`, `exhausted`, `reserved`, `drawn` |
//! | `P:wr:{o}:intents` | hash | user → purchase staged while waiting |
//! | `P:wr:{o}:lease` | string | the controller holding the onsale |
//! | `P:wr:{o}:node:{n}` | hash | place id → connections of node `n` attached to it |
//! | `P:wr:nodes` | sorted set | node presence ids, by when their heartbeat runs out |
//! | `P:wr:account:{a}` | sorted set | the onsales account `a` waits in, by when it entered |
//!
//! The scripts are the memory implementation's methods, step for step
//! ([`super::MemoryLine`]); the conformance suite holds them to it.

use super::{Admitted, Ending, Joined, LineError, LineView, Place};
use fred::prelude::{ClientLike, HashesInterface, SortedSetsInterface};
use fred::types::Value;
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand};
use std::time::Duration;
use uuid::Uuid;

fn unavailable(e: impl std::fmt::Display) -> LineError {
    crate::metrics::METRICS.redis_errors.increment(1);
    LineError::Unavailable(e.to_string())
}

fn corrupt(what: impl std::fmt::Debug) -> LineError {
    LineError::Corrupt(format!("{what:?}"))
}

/// An onsale's keys, in the order every onsale script receives them as `KEYS`.
const ONSALE_KEYS: [&str; 13] = [
    "status", "seq", "places", "owners", "pre", "line", "presence", "absent", "gone", "admitted",
    "noshow", "meta", "intents",
];

/// The Lua that names an onsale script's keys: `k_status` is `KEYS[1]`, and so on, so no
/// script refers to a key by its number.
fn key_names() -> String {
    let names: Vec<String> = ONSALE_KEYS.iter().map(|k| format!("k_{k}")).collect();
    let keys: Vec<String> = (1..=ONSALE_KEYS.len())
        .map(|i| format!("KEYS[{i}]"))
        .collect();
    format!("local {} = {}\n", names.join(", "), keys.join(", "))
}

/// Lua shared by the scripts: ending a place, whatever its state.
const DROP_PLACE: &str = r"
local function drop_place(user)
  redis.call('HDEL', k_presence, user)
  redis.call('ZREM', k_absent, user)
  redis.call('ZREM', k_admitted, user)
  redis.call('ZREM', k_noshow, user)
  redis.call('HDEL', k_intents, user)
  local cur = redis.call('HGET', k_places, user)
  if not cur then return false end
  local id, seq = string.match(cur, '^(.*):(%d+)$')
  seq = tonumber(seq)
  if seq == 0 then
    redis.call('SREM', k_pre, id)
  elseif redis.call('ZREM', k_line, user) == 1 then
    redis.call('ZADD', k_gone, seq, seq)
  end
  redis.call('HDEL', k_places, user)
  redis.call('HDEL', k_owners, id)
  return true
end
";

/// Joins a batch. A batch's new places are written at its end, one command per key (a
/// variadic `HSET`, `ZADD`, `SADD` for all of them, and the line's counter set once), not seven
/// commands per buyer.
/// Until then `made` holds them, so a buyer twice in one batch attaches to the place the first
/// made, as if each join had been a call of its own.
const JOIN: &str = r"
-- ARGV holds (user, new place id, attached place id) triples: one call joins a whole batch.
-- The last key is the joining node's attachments.
local k_node = KEYS[#KEYS]
local status = redis.call('GET', k_status) or 'scheduled'
local open = status == 'pre_queue' or status == 'live' or status == 'paused'
local out = {}
local made, users, ids, seqs, presence = {}, {}, {}, {}, {}
local seq = nil
for i = 1, #ARGV, 3 do
  local user, id, attached = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local new = made[user]
  local cur = new or redis.call('HGET', k_places, user)
  if cur then
    local cur_id = string.match(cur, '^(.*):')
    if new then
      -- Another tab in the same batch: one more attachment of the place it made.
      if cur_id ~= attached then presence[user] = presence[user] + 1 end
    else
      if cur_id ~= attached then
        redis.call('HINCRBY', k_presence, user, 1)
        redis.call('HINCRBY', k_node, cur_id, 1)
      end
      redis.call('ZREM', k_absent, user)
      redis.call('ZREM', k_noshow, user)
    end
    out[#out + 1] = 'attached'
    out[#out + 1] = cur
    out[#out + 1] = (not new and redis.call('ZSCORE', k_admitted, user)) or ''
  elseif not open then
    out[#out + 1] = 'refused'
    out[#out + 1] = status
    out[#out + 1] = ''
  else
    local place_seq = 0
    if status ~= 'pre_queue' then
      seq = (seq or tonumber(redis.call('GET', k_seq) or '0')) + 1
      place_seq = seq
    end
    local place = id .. ':' .. place_seq
    made[user] = place
    seqs[user] = place_seq
    users[#users + 1] = user
    ids[user] = id
    presence[user] = 1
    out[#out + 1] = 'new'
    out[#out + 1] = place
    out[#out + 1] = ''
  end
end
if #users == 0 then return out end
-- Each write in slices, well under Lua's limit on a call's arguments.
local function write(cmd, key, pair)
  local args = {}
  for j = 1, #users do
    local a, b = pair(users[j])
    args[#args + 1] = a
    if b ~= nil then args[#args + 1] = b end
    if #args >= 1000 or j == #users then
      redis.call(cmd, key, unpack(args))
      args = {}
    end
  end
end
write('HSET', k_places, function(u) return u, made[u] end)
write('HSET', k_owners, function(u) return ids[u], u end)
write('HSET', k_presence, function(u) return u, presence[u] end)
-- A new place's id is new to every node's attachments.
write('HSET', k_node, function(u) return ids[u], presence[u] end)
if seq then
  write('ZADD', k_line, function(u) return seqs[u], u end)
  redis.call('SET', k_seq, seq)
else
  write('SADD', k_pre, function(u) return ids[u] end)
end
return out
";

/// Detaches closed connections: ARGV is the deadline, then (user, place) pairs. A place whose
/// last connection went starts its grace period (waiting places only); a pair naming a place
/// that is no longer the user's only lowers the node's count of it.
const DETACH: &str = r"
local k_node = KEYS[#KEYS]
local deadline = ARGV[1]
for j = 2, #ARGV, 2 do
  local user, place = ARGV[j], ARGV[j + 1]
  if redis.call('HINCRBY', k_node, place, -1) <= 0 then redis.call('HDEL', k_node, place) end
  local cur = redis.call('HGET', k_places, user)
  if cur and string.match(cur, '^(.*):') == place
     and redis.call('HINCRBY', k_presence, user, -1) <= 0 then
    redis.call('HDEL', k_presence, user)
    if not redis.call('ZSCORE', k_admitted, user) then
      redis.call('ZADD', k_absent, deadline, user)
    end
  end
end
return 1
";

/// Detaches every connection a dead node had attached (the last key holds them).
const DETACH_NODE: &str = r"
local k_node = KEYS[#KEYS]
local lost = 0
local all = redis.call('HGETALL', k_node)
for i = 1, #all, 2 do
  local id, n = all[i], tonumber(all[i + 1])
  local user = redis.call('HGET', k_owners, id)
  local cur = user and redis.call('HGET', k_places, user)
  if cur and string.match(cur, '^(.*):') == id then
    if redis.call('HINCRBY', k_presence, user, -n) <= 0 then
      redis.call('HDEL', k_presence, user)
      if not redis.call('ZSCORE', k_admitted, user) then
        redis.call('ZADD', k_absent, ARGV[1], user)
      end
      lost = lost + 1
    end
  end
end
redis.call('DEL', k_node)
return lost
";

const LEAVE: &str = r"
if drop_place(ARGV[1]) then return 1 end
return 0
";

const FINISH: &str = r"
if not redis.call('ZSCORE', k_admitted, ARGV[1]) then return 0 end
if drop_place(ARGV[1]) then return 1 end
return 0
";

const CLOSE_PRE_QUEUE: &str = r"
local status = redis.call('GET', k_status) or 'scheduled'
local early = status == 'scheduled' or status == 'pre_queue'
if not redis.call('HGET', k_meta, 'reserved') then
  local k = 0
  if early then
    k = redis.call('SCARD', k_pre)
    redis.call('SET', k_seq, k)
  end
  redis.call('HSET', k_meta, 'reserved', k)
end
if early then redis.call('SET', k_status, 'live') end
if redis.call('HGET', k_meta, 'drawn') == '1' then return {} end
local ids = redis.call('SMEMBERS', k_pre)
table.sort(ids)
return ids
";

// The draw, in parts so that no one script holds Redis long (74,000 places took seconds on a
// loaded machine, and every other client got BUSY meanwhile). DRAW_PART gives ARGV[2..] the
// sequences from ARGV[1] on; a part repeated (a controller that took over) changes nothing.
// DRAW_END marks the reserved sequences past the order gone and the line drawn; until then
// nothing is admitted.
const DRAW_PART: &str = r"
local drawn, reserved = unpack(redis.call('HMGET', k_meta, 'drawn', 'reserved'))
if drawn == '1' or not reserved then return 0 end
local base = tonumber(ARGV[1])
for j = 2, #ARGV do
  local id, i = ARGV[j], base + j - 2
  local user = redis.call('HGET', k_owners, id)
  if user and redis.call('SREM', k_pre, id) == 1 then
    redis.call('ZADD', k_line, i, user)
    redis.call('HSET', k_places, user, id .. ':' .. i)
  elseif not (user and redis.call('HGET', k_places, user) == id .. ':' .. i) then
    redis.call('ZADD', k_gone, i, i)
  end
end
return 1
";

const DRAW_END: &str = r"
local drawn, reserved = unpack(redis.call('HMGET', k_meta, 'drawn', 'reserved'))
if drawn == '1' or not reserved then return 0 end
for i = tonumber(ARGV[1]) + 1, tonumber(reserved) do
  redis.call('ZADD', k_gone, i, i)
end
redis.call('HSET', k_meta, 'drawn', '1')
return 1
";

const ADMIT: &str = r"
local max, cap, untilv, show = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local exhausted, drawn = unpack(redis.call('HMGET', k_meta, 'exhausted', 'drawn'))
if redis.call('GET', k_status) ~= 'live' or exhausted == '1' or drawn ~= '1' then return {} end
local n = math.min(max, cap - redis.call('ZCARD', k_admitted))
if n <= 0 then return {} end
local popped = redis.call('ZPOPMIN', k_line, n)
local out = {}
local cursor
local before = tonumber(redis.call('HGET', k_meta, 'admitted') or '0')
for i = 1, #popped, 2 do
  local user, seq = popped[i], popped[i + 1]
  redis.call('ZADD', k_admitted, untilv, user)
  local present = tonumber(redis.call('HGET', k_presence, user) or '0') > 0
  if not present then redis.call('ZADD', k_noshow, show, user) end
  redis.call('ZREM', k_absent, user)
  cursor = seq
  out[#out + 1] = user
  out[#out + 1] = redis.call('HGET', k_places, user)
  out[#out + 1] = present and '1' or '0'
  out[#out + 1] = redis.call('HGET', k_intents, user) or ''
  out[#out + 1] = before + (i + 1) / 2
  redis.call('HDEL', k_intents, user)
end
if cursor then
  redis.call('HSET', k_meta, 'cursor', cursor)
  redis.call('HINCRBY', k_meta, 'admitted', #popped / 2)
  redis.call('ZREMRANGEBYSCORE', k_gone, '-inf', cursor)
end
return out
";

const EXPIRE: &str = r"
local now, limit = ARGV[1], ARGV[2]
local out = {}
for _, kind in ipairs({{k_absent, 'grace_expired'}, {k_noshow, 'no_show'}, {k_admitted, 'admission_ended'}}) do
  local due = redis.call('ZRANGEBYSCORE', kind[1], '-inf', now, 'LIMIT', 0, limit)
  for _, user in ipairs(due) do
    if drop_place(user) then
      out[#out + 1] = user
      out[#out + 1] = kind[2]
    end
  end
end
return out
";

const VIEW: &str = r"
-- ARGV: the highest sequence asked about, the exact window (LineView::gone_before).
local m = redis.call('HMGET', k_meta, 'cursor', 'admitted', 'exhausted', 'drawn')
local cursor = m[1] or '0'
local c = tonumber(cursor)
local upto = math.max(tonumber(ARGV[1]), c)
local window = tonumber(ARGV[2])
local last = redis.call('GET', k_seq) or '0'
-- gone_block: 1,000 below 100,000, 10,000 below 1,000,000, 100,000 beyond.
local function block(s)
  if s < 100000 then return 1000 elseif s < 1000000 then return 10000 else return 100000 end
end
local counts = {}
local after = c + window + 1
local b = math.floor(after / block(after)) * block(after) + block(after)
local top = math.min(upto, tonumber(last))
while b <= top do
  counts[#counts + 1] = b
  counts[#counts + 1] = redis.call('ZCOUNT', k_gone, '(' .. cursor, '(' .. b)
  b = b + block(b)
end
return {
  redis.call('GET', k_status) or 'scheduled', cursor, m[2] or '0', m[3] or '0', m[4] or '0',
  redis.call('ZCARD', k_line) + redis.call('SCARD', k_pre), redis.call('ZCARD', k_admitted),
  last,
  redis.call('ZRANGEBYSCORE', k_gone, '(' .. cursor, math.min(upto, c + window)),
  counts
}
";

const VIEW_AT: &str = r"
-- The view of one place: what VIEW says of sequence ARGV[1] (its ahead and whether it is
-- gone) at the cost of one count. ARGV: the sequence, the exact window. Within the window, the
-- gaps up to it; beyond, the one count LineView::ahead reads for it, keyed by its block's start.
local m = redis.call('HMGET', k_meta, 'cursor', 'admitted', 'exhausted', 'drawn')
local cursor = m[1] or '0'
local c = tonumber(cursor)
local seq = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local last = redis.call('GET', k_seq) or '0'
local function block(s)
  if s < 100000 then return 1000 elseif s < 1000000 then return 10000 else return 100000 end
end
local gone = {}
local counts = {}
if seq > c and seq <= c + window then
  gone = redis.call('ZRANGEBYSCORE', k_gone, '(' .. cursor, seq)
elseif seq > c then
  local start = math.floor(seq / block(seq)) * block(seq)
  local after = c + window + 1
  local first = math.floor(after / block(after)) * block(after) + block(after)
  counts[1] = start
  if start >= first then
    -- A boundary of the whole view: the gaps below it.
    counts[2] = redis.call('ZCOUNT', k_gone, '(' .. cursor, '(' .. start)
  else
    -- Below the whole view's first boundary it counts the window's gaps.
    counts[2] = redis.call('ZCOUNT', k_gone, '(' .. cursor, c + window)
  end
end
return {
  redis.call('GET', k_status) or 'scheduled', cursor, m[2] or '0', m[3] or '0', m[4] or '0',
  redis.call('ZCARD', k_line) + redis.call('SCARD', k_pre), redis.call('ZCARD', k_admitted),
  last, gone, counts
}
";

const PLACE: &str = r"
local cur = redis.call('HGET', k_places, ARGV[1])
if not cur then return {} end
return {cur, redis.call('ZSCORE', k_admitted, ARGV[1]) or ''}
";

const PLACES: &str = r"
-- Each user's place and admission, two values a user ('' for none), in ARGV order.
local out = {}
for _, user in ipairs(ARGV) do
  out[#out + 1] = redis.call('HGET', k_places, user) or ''
  out[#out + 1] = redis.call('ZSCORE', k_admitted, user) or ''
end
return out
";

/// Adds the onsale to the account's queues, or takes it back out when that makes one too many:
/// three commands for the usual new entry (the join of an account in no other queue).
const ENTER: &str = r"
local account = KEYS[1]
if redis.call('ZADD', account, 'NX', ARGV[3], ARGV[1]) == 0 then return 1 end
if redis.call('ZCARD', account) > tonumber(ARGV[2]) then
  redis.call('ZREM', account, ARGV[1])
  return 0
end
redis.call('PEXPIRE', account, 86400000)
return 1
";

const STAGE: &str = r"
if redis.call('HEXISTS', k_places, ARGV[1]) == 0 or redis.call('ZSCORE', k_admitted, ARGV[1]) then
  return 0
end
redis.call('HSET', k_intents, ARGV[1], ARGV[2])
return 1
";

// With a second argument, only if the status is that now.
const SET_STATUS: &str = r"
if ARGV[2] and redis.call('GET', k_status) ~= ARGV[2] then return 0 end
redis.call('SET', k_status, ARGV[1])
return 1
";

/// The line in Redis.
pub struct RedisLine {
    client: fred::clients::Client,
    prefix: String,
    join: Script,
    detach_many: Script,
    detach_node: Script,
    leave: Script,
    finish: Script,
    close_pre_queue: Script,
    draw_part: Script,
    draw_end: Script,
    admit: Script,
    expire: Script,
    view: Script,
    view_at: Script,
    place: Script,
    places: Script,
    set_status: Script,
    stage: Script,
    enter: Script,
    lease: Script,
}

impl std::fmt::Debug for RedisLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLine")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn text(v: &Value) -> Result<String, LineError> {
    v.as_string().ok_or_else(|| corrupt(v))
}

fn number(v: &Value) -> Result<u64, LineError> {
    match v {
        Value::Integer(i) => u64::try_from(*i).map_err(|_| corrupt(v)),
        _ => {
            let s = text(v)?;
            // Sorted-set scores come back as strings such as `12` (or `1e+15` for huge ones).
            s.parse::<u64>()
                .or_else(|_| s.parse::<f64>().map(|f| f as u64))
                .map_err(|_| corrupt(v))
        }
    }
}

/// A view from the reply of VIEW or VIEW_AT (the same shape).
/// Places drawn by one script call (a few milliseconds of Redis's time each).
const DRAW_PART_LEN: usize = 2_000;

fn view_of(reply: &[Value]) -> Result<LineView, LineError> {
    let [
        status,
        cursor,
        admitted,
        exhausted,
        drawn,
        waiting,
        active,
        last,
        gone,
        counts,
    ] = reply
    else {
        return Err(corrupt(reply));
    };
    let numbers = |v: &Value| -> Result<Vec<u64>, LineError> {
        match v {
            Value::Array(values) => values.iter().map(number).collect(),
            Value::Null => Ok(Vec::new()),
            other => Err(corrupt(other)),
        }
    };
    let gone = numbers(gone)?;
    let gone_before = numbers(counts)?
        .chunks_exact(2)
        .map(|pair| (pair[0], pair[1]))
        .collect();
    Ok(LineView {
        status: text(status)?,
        cursor: number(cursor)?,
        admitted_total: number(admitted)?,
        exhausted: text(exhausted)? == "1",
        drawn: text(drawn)? == "1",
        waiting: number(waiting)?,
        active: number(active)?,
        last_seq: number(last)?,
        gone,
        gone_before,
    })
}

fn optional_ms(v: &Value) -> Result<Option<u64>, LineError> {
    let s = text(v)?;
    if s.is_empty() {
        Ok(None)
    } else {
        number(v).map(Some)
    }
}

impl RedisLine {
    /// Connects to Redis; keys go under `prefix` (shared with the rest of the deployment).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, LineError> {
        let client = crate::redis::client(url).await.map_err(unavailable)?;
        let keys = key_names();
        let script = |body: &str| Script::from_lua(format!("{keys}{body}"));
        let with_drop = |body: &str| Script::from_lua(format!("{keys}{DROP_PLACE}\n{body}"));
        Ok(Self {
            client,
            prefix: prefix.to_owned(),
            join: script(JOIN),
            detach_many: script(DETACH),
            detach_node: script(DETACH_NODE),
            leave: with_drop(LEAVE),
            finish: with_drop(FINISH),
            close_pre_queue: script(CLOSE_PRE_QUEUE),
            draw_part: script(DRAW_PART),
            draw_end: script(DRAW_END),
            admit: script(ADMIT),
            expire: with_drop(EXPIRE),
            view: script(VIEW),
            view_at: script(VIEW_AT),
            place: script(PLACE),
            places: script(PLACES),
            set_status: script(SET_STATUS),
            stage: script(STAGE),
            enter: Script::from_lua(ENTER),
            lease: Script::from_lua(crate::redis::LEASE_LUA),
        })
    }

    /// The onsale's keys, in [`ONSALE_KEYS`] order.
    fn keys(&self, onsale: Uuid) -> Vec<String> {
        ONSALE_KEYS.iter().map(|k| self.key(onsale, k)).collect()
    }

    /// One of the onsale's keys.
    fn key(&self, onsale: Uuid, name: &str) -> String {
        format!("{}:wr:{{{onsale}}}:{name}", self.prefix)
    }

    async fn run(
        &self,
        script: &Script,
        onsale: Uuid,
        args: Vec<Value>,
    ) -> Result<Value, LineError> {
        script
            .evalsha_with_reload(&self.client, self.keys(onsale), args)
            .await
            .map_err(unavailable)
    }

    /// Runs a script that also takes node `node`'s attachments in `onsale` (its last key).
    async fn run_on_node(
        &self,
        script: &Script,
        onsale: Uuid,
        node: &str,
        args: Vec<Value>,
    ) -> Result<Value, LineError> {
        let mut keys = self.keys(onsale);
        keys.push(self.key(onsale, &format!("node:{node}")));
        script
            .evalsha_with_reload(&self.client, keys, args)
            .await
            .map_err(unavailable)
    }

    fn nodes_key(&self) -> String {
        format!("{}:wr:nodes", self.prefix)
    }

    /// Records `node` alive until `until`; when it was alive until before.
    pub(crate) async fn heartbeat(
        &self,
        node: &str,
        until: u64,
        now_ms: u64,
    ) -> Result<Option<u64>, LineError> {
        let key = self.nodes_key();
        let pipeline = self.client.pipeline();
        let () = pipeline.zscore(&key, node).await.map_err(unavailable)?;
        let () = pipeline
            .zadd(&key, None, None, false, false, (until as f64, node))
            .await
            .map_err(unavailable)?;
        let () = pipeline
            .zremrangebyscore(
                &key,
                f64::NEG_INFINITY,
                now_ms.saturating_sub(super::DEAD_NODE_MEMORY_MS) as f64,
            )
            .await
            .map_err(unavailable)?;
        let replies: Vec<Value> = pipeline.all().await.map_err(unavailable)?;
        match replies.first() {
            Some(Value::Null) | None => Ok(None),
            Some(Value::Double(d)) => Ok(Some(*d as u64)),
            Some(other) => Ok(Some(number(other)?)),
        }
    }

    pub(crate) async fn dead_nodes(&self, now_ms: u64) -> Result<Vec<String>, LineError> {
        self.client
            .zrangebyscore(
                self.nodes_key(),
                f64::NEG_INFINITY,
                now_ms as f64,
                false,
                None,
            )
            .await
            .map_err(unavailable)
    }

    pub(crate) async fn detach_node(
        &self,
        onsale: Uuid,
        node: &str,
        deadline: u64,
    ) -> Result<u64, LineError> {
        let lost = self
            .run_on_node(
                &self.detach_node,
                onsale,
                node,
                vec![(deadline as i64).into()],
            )
            .await?;
        number(&lost)
    }

    async fn run_list(
        &self,
        script: &Script,
        onsale: Uuid,
        args: Vec<Value>,
    ) -> Result<Vec<Value>, LineError> {
        match self.run(script, onsale, args).await? {
            Value::Array(values) => Ok(values),
            Value::Null => Ok(Vec::new()),
            other => Err(corrupt(other)),
        }
    }

    pub(crate) async fn join_many(
        &self,
        onsale: Uuid,
        joins: &[(&str, String, Option<&str>)],
        node: &str,
    ) -> Result<Vec<Joined>, LineError> {
        let args = joins
            .iter()
            .flat_map(|(user, id, attached)| {
                [
                    Value::from(*user),
                    Value::from(id.as_str()),
                    Value::from(attached.unwrap_or("")),
                ]
            })
            .collect();
        let reply = match self.run_on_node(&self.join, onsale, node, args).await? {
            Value::Array(values) => values,
            Value::Null => Vec::new(),
            other => return Err(corrupt(other)),
        };
        if reply.len() != joins.len() * 3 {
            return Err(corrupt(reply));
        }
        reply
            .chunks(3)
            .map(|chunk| {
                let [kind, what, until] = chunk else {
                    return Err(corrupt(chunk));
                };
                let what = text(what)?;
                let place = || {
                    Place::decode(&what, optional_ms(until).ok().flatten())
                        .ok_or_else(|| corrupt(&what))
                };
                match text(kind)?.as_str() {
                    "new" => Ok(Joined::New(place()?)),
                    "attached" => Ok(Joined::Attached(place()?)),
                    "refused" => Ok(Joined::Refused { status: what }),
                    _ => Err(corrupt(chunk)),
                }
            })
            .collect()
    }

    pub(crate) async fn detach_many(
        &self,
        onsale: Uuid,
        closed: &[(String, String)],
        deadline: u64,
        node: &str,
    ) -> Result<(), LineError> {
        let args = std::iter::once((deadline as i64).into())
            .chain(
                closed
                    .iter()
                    .flat_map(|(user, place)| [user.as_str().into(), place.as_str().into()]),
            )
            .collect();
        self.run_on_node(&self.detach_many, onsale, node, args)
            .await
            .map(drop)
    }

    pub(crate) async fn leave(&self, onsale: Uuid, user: &str) -> Result<bool, LineError> {
        let done = self.run(&self.leave, onsale, vec![user.into()]).await?;
        Ok(number(&done)? == 1)
    }

    pub(crate) async fn stage(
        &self,
        onsale: Uuid,
        user: &str,
        intent: &str,
    ) -> Result<bool, LineError> {
        let done = self
            .run(&self.stage, onsale, vec![user.into(), intent.into()])
            .await?;
        Ok(number(&done)? == 1)
    }

    pub(crate) async fn finish(&self, onsale: Uuid, user: &str) -> Result<bool, LineError> {
        let done = self.run(&self.finish, onsale, vec![user.into()]).await?;
        Ok(number(&done)? == 1)
    }

    pub(crate) async fn set_status(&self, onsale: Uuid, status: &str) -> Result<(), LineError> {
        self.run(&self.set_status, onsale, vec![status.into()])
            .await
            .map(drop)
    }

    pub(crate) async fn switch_status(
        &self,
        onsale: Uuid,
        from: &str,
        to: &str,
    ) -> Result<bool, LineError> {
        let done = self
            .run(&self.set_status, onsale, vec![to.into(), from.into()])
            .await?;
        Ok(number(&done)? == 1)
    }

    pub(crate) async fn set_exhausted(
        &self,
        onsale: Uuid,
        exhausted: bool,
    ) -> Result<(), LineError> {
        let meta = self.key(onsale, "meta");
        let flag = if exhausted { "1" } else { "0" };
        self.client
            .hset::<(), _, _>(meta, ("exhausted", flag))
            .await
            .map_err(unavailable)
    }

    pub(crate) async fn close_pre_queue(&self, onsale: Uuid) -> Result<Vec<String>, LineError> {
        self.run_list(&self.close_pre_queue, onsale, Vec::new())
            .await?
            .iter()
            .map(text)
            .collect()
    }

    pub(crate) async fn draw(&self, onsale: Uuid, order: &[String]) -> Result<(), LineError> {
        for (part, ids) in order.chunks(DRAW_PART_LEN).enumerate() {
            let first = (part * DRAW_PART_LEN + 1) as i64;
            let args = std::iter::once(first.into())
                .chain(ids.iter().map(|id| id.as_str().into()))
                .collect();
            self.run(&self.draw_part, onsale, args).await?;
        }
        let args = vec![(order.len() as i64).into()];
        self.run(&self.draw_end, onsale, args).await.map(drop)
    }

    pub(crate) async fn admit(
        &self,
        onsale: Uuid,
        max: u64,
        cap: u64,
        until: u64,
        show: u64,
    ) -> Result<Vec<Admitted>, LineError> {
        let args = vec![
            (max as i64).into(),
            (cap as i64).into(),
            (until as i64).into(),
            (show as i64).into(),
        ];
        let reply = self.run_list(&self.admit, onsale, args).await?;
        reply
            .chunks(5)
            .map(|chunk| {
                let [user, place, present, intent, ordinal] = chunk else {
                    return Err(corrupt(chunk));
                };
                let raw = text(place)?;
                let intent = text(intent)?;
                Ok(Admitted {
                    user: text(user)?,
                    place: Place::decode(&raw, Some(until)).ok_or_else(|| corrupt(&raw))?,
                    present: text(present)? == "1",
                    intent: (!intent.is_empty()).then_some(intent),
                    ordinal: number(ordinal)?,
                })
            })
            .collect()
    }

    pub(crate) async fn expire(
        &self,
        onsale: Uuid,
        now: u64,
        limit: usize,
    ) -> Result<Vec<(String, Ending)>, LineError> {
        let args = vec![(now as i64).into(), (limit as i64).into()];
        let reply = self.run_list(&self.expire, onsale, args).await?;
        reply
            .chunks(2)
            .map(|chunk| {
                let [user, kind] = chunk else {
                    return Err(corrupt(chunk));
                };
                let kind = text(kind)?;
                Ok((
                    text(user)?,
                    Ending::parse(&kind).ok_or_else(|| corrupt(kind))?,
                ))
            })
            .collect()
    }

    pub(crate) async fn view(&self, onsale: Uuid, upto: u64) -> Result<LineView, LineError> {
        let args = vec![
            // Lua numbers are doubles: a bound past 2^53 means "every sequence" anyway.
            (upto.min(1 << 53) as i64).into(),
            (super::EXACT_WINDOW as i64).into(),
        ];
        let reply = self.run_list(&self.view, onsale, args).await?;
        view_of(&reply)
    }

    pub(crate) async fn view_at(&self, onsale: Uuid, seq: u64) -> Result<LineView, LineError> {
        let args = vec![
            (seq.min(1 << 53) as i64).into(),
            (super::EXACT_WINDOW as i64).into(),
        ];
        let reply = self.run_list(&self.view_at, onsale, args).await?;
        view_of(&reply)
    }

    pub(crate) async fn place(&self, onsale: Uuid, user: &str) -> Result<Option<Place>, LineError> {
        let reply = self
            .run_list(&self.place, onsale, vec![user.into()])
            .await?;
        match reply.as_slice() {
            [] => Ok(None),
            [raw, until] => {
                let raw = text(raw)?;
                Place::decode(&raw, optional_ms(until)?)
                    .map(Some)
                    .ok_or_else(|| corrupt(raw))
            }
            _ => Err(corrupt(reply)),
        }
    }

    pub(crate) async fn places(
        &self,
        onsale: Uuid,
        users: &[String],
    ) -> Result<Vec<Option<Place>>, LineError> {
        let args = users.iter().map(|u| u.as_str().into()).collect();
        let reply = self.run_list(&self.places, onsale, args).await?;
        if reply.len() != users.len() * 2 {
            return Err(corrupt(reply));
        }
        reply
            .chunks(2)
            .map(|pair| {
                let raw = text(&pair[0])?;
                if raw.is_empty() {
                    return Ok(None);
                }
                Place::decode(&raw, optional_ms(&pair[1])?)
                    .map(Some)
                    .ok_or_else(|| corrupt(raw))
            })
            .collect()
    }

    fn account_key(&self, account: &str) -> String {
        format!("{}:wr:account:{{{account}}}", self.prefix)
    }

    /// One `ENTER` per account, sent as one pipeline (each script touches its account's key
    /// alone). A Redis that lost its scripts (a restart) gets them again and the pipeline is
    /// sent once more: entering is idempotent, so accounts that got in the first time are
    /// only told so again.
    pub(crate) async fn enter_many(
        &self,
        accounts: &[&str],
        onsale: Uuid,
        cap: usize,
        now: u64,
    ) -> Result<Vec<bool>, LineError> {
        let onsale = onsale.to_string();
        let mut reloaded = false;
        loop {
            let pipeline = self.client.pipeline();
            for account in accounts {
                // fred pipelines no scripts: `EVALSHA sha 1 key ...` as a command of its own,
                // routed by its key (the third argument) on a Redis Cluster.
                let evalsha = CustomCommand::new_static("EVALSHA", ClusterHash::Offset(2), false);
                let args: Vec<Value> = vec![
                    self.enter.sha1().clone().into(),
                    1.into(),
                    self.account_key(account).into(),
                    onsale.as_str().into(),
                    (cap as i64).into(),
                    (now as i64).into(),
                ];
                let () = pipeline.custom(evalsha, args).await.map_err(unavailable)?;
            }
            let replies: Vec<Result<Value, fred::error::Error>> = pipeline.try_all().await;
            let lost_script = replies
                .iter()
                .any(|r| matches!(r, Err(e) if e.details().starts_with("NOSCRIPT")));
            if lost_script && !reloaded {
                self.enter.load(&self.client).await.map_err(unavailable)?;
                reloaded = true;
                continue;
            }
            return replies
                .into_iter()
                .map(|reply| Ok(number(&reply.map_err(unavailable)?)? == 1))
                .collect();
        }
    }

    pub(crate) async fn queues(&self, account: &str) -> Result<Vec<(Uuid, u64)>, LineError> {
        let raw: Vec<(String, f64)> = self
            .client
            .zrange(self.account_key(account), 0, -1, None, false, None, true)
            .await
            .map_err(unavailable)?;
        Ok(raw
            .into_iter()
            .filter_map(|(o, t)| Some((Uuid::parse_str(&o).ok()?, t as u64)))
            .collect())
    }

    pub(crate) async fn exit(&self, account: &str, onsale: Uuid) -> Result<(), LineError> {
        self.client
            .zrem::<(), _, _>(self.account_key(account), onsale.to_string())
            .await
            .map_err(unavailable)
    }

    pub(crate) async fn lease(
        &self,
        onsale: Uuid,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, LineError> {
        let key = format!("{}:wr:{{{onsale}}}:lease", self.prefix);
        let got: i64 = self
            .lease
            .evalsha_with_reload(
                &self.client,
                vec![key],
                vec![holder.to_owned(), ttl.as_millis().to_string()],
            )
            .await
            .map_err(unavailable)?;
        Ok(got == 1)
    }
}
