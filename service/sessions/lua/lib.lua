-- Shared by every session script. KEYS, built by service/sessions/keys.py, all on the
-- user's slot: [1] the session index (it routes the call to the user's Redis Cluster slot),
-- [2] device map, [3] event log, [4] channel, [5] tombstone index, [6] revoked credentials
-- (all on the user's hash tag), [7] the slot's outbox and [8] its wake channel (on a tag
-- that hashes to the same slot).
-- ARGV[1] is one JSON object of named arguments: `now` and `grace` (ms), `log_len`,
-- `user`, `record_prefix` and `tomb_prefix` (a session's key is the prefix plus its id, so
-- it stays on the slot), `max_tombstones`, `keep_ms` (how long the user's log and
-- tombstone index outlive their last change: a session's maximum age plus grace),
-- `retention_ms` (how long the outbox keeps an event), plus each script's own.
local IDX, DEV, LOG, CHANNEL, TOMBS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local CREDS = KEYS[6]  -- the user's revoked credentials (create.lua, revoke.lua)
local OUTBOX, WAKE = KEYS[7], KEYS[8]  -- the outbox of the user's slot, and its wake channel
local A = cjson.decode(ARGV[1])
local NOW, GRACE = A.now, A.grace

local function session_key(sid) return A.record_prefix .. sid end
local function tomb_key(sid) return A.tomb_prefix .. sid end

local function load_session(sid)
  local flat = redis.call('HGETALL', session_key(sid))
  if #flat == 0 then return nil end
  local rec = {}
  for i = 1, #flat, 2 do rec[flat[i]] = flat[i + 1] end
  for _, f in ipairs({'created_ms', 'seen_ms', 'max_ms', 'idle_ms', 'online_until'}) do
    rec[f] = tonumber(rec[f] or 0)
  end
  return rec
end

-- Twin of records.deadline_ms in Python.
local function deadline(rec)
  return math.min(rec.seen_ms + rec.idle_ms, rec.max_ms)
end

-- Append the event to the user's capped log and to the slot's outbox, and publish it, with
-- its log id, in one step. Sharded pub/sub: the channels' slot is the user's, so only the
-- node that owns it (and its replicas) carries the messages, however large the cluster.
-- The outbox is trimmed by age on the server's clock, the clock of its entry ids.
local function log_event(event)
  event.user = A.user
  event.at = NOW
  local stored = cjson.encode(event)
  local id = redis.call('XADD', LOG, 'MAXLEN', '~', A.log_len, '*', 'e', stored)
  redis.call('PEXPIRE', LOG, A.keep_ms)
  return id, stored
end

-- An event for the user's devices and activity log, but none of events out (a rename:
-- the outbox carries only the event types webhooks are told).
local function tell(event)
  local id = log_event(event)
  event.id = id
  redis.call('SPUBLISH', CHANNEL, cjson.encode(event))
  return id
end

local function emit(event)
  local id, stored = log_event(event)
  local time = redis.call('TIME')
  local oldest = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) - A.retention_ms
  redis.call('XADD', OUTBOX, 'MINID', '~', oldest, '*', 't', event.type, 'e', stored)
  redis.call('SPUBLISH', WAKE, '')
  event.id = id
  redis.call('SPUBLISH', CHANNEL, cjson.encode(event))
  return id
end

-- Remember why `sid` ended while its token could still be shown; at most `max_tombstones`
-- per user (the oldest go first: their tokens stay refused, only the reason is forgotten).
local function bury(sid, tomb, until_ms)
  redis.call('SET', tomb_key(sid), cjson.encode(tomb), 'PXAT', until_ms)
  redis.call('ZADD', TOMBS, NOW, sid)
  local excess = redis.call('ZCARD', TOMBS) - A.max_tombstones
  if excess > 0 then
    for _, old in ipairs(redis.call('ZRANGE', TOMBS, 0, excess - 1)) do
      redis.call('DEL', tomb_key(old))
    end
    redis.call('ZREMRANGEBYRANK', TOMBS, 0, excess - 1)
  end
  redis.call('PEXPIRE', TOMBS, A.keep_ms)
end

-- End one session: delete it, leave a tombstone until its token would expire, emit.
-- Returns the session id, or nil when there was no such session.
local function revoke(sid, reason, by)
  local rec = load_session(sid)
  local indexed = redis.call('ZSCORE', IDX, sid)
  if not rec and not indexed then return nil end
  redis.call('DEL', session_key(sid))
  redis.call('ZREM', IDX, sid)
  if rec and rec.device_id ~= '' and redis.call('HGET', DEV, rec.device_id) == sid then
    redis.call('HDEL', DEV, rec.device_id)
  end
  bury(sid, {reason = reason, at = NOW, by = by}, (rec and rec.max_ms or NOW) + GRACE)
  emit({type = 'session.revoked', session_id = sid, reason = reason, by = by,
        session = rec or {session_id = sid}})
  return sid
end

local function append(list, value)
  if value then table.insert(list, value) end
  return list
end

-- Revoke, with reason 'expired', every session of the user that is past its deadline.
local function expire_due(revoked)
  for _, sid in ipairs(redis.call('ZRANGE', IDX, 0, -1)) do
    local rec = load_session(sid)
    if not rec or deadline(rec) <= NOW then
      append(revoked, revoke(sid, 'expired', cjson.null))
    end
  end
  return revoked
end
