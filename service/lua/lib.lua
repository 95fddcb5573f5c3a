-- Shared by every session script. Scripts are called with KEYS[1] = the user's index key
-- (so Redis Cluster routes to the user's slot) and ARGV[1] = the user's key prefix
-- 'sw:{u:<name>}:'; every other key of the user is built from it, on the same slot.
-- ARGV[2] = now (ms), ARGV[3] = grace (ms), ARGV[4] = event log length, ARGV[5] = user.
local P = ARGV[1]
local NOW = tonumber(ARGV[2])
local GRACE = tonumber(ARGV[3])
local LOG_LEN = tonumber(ARGV[4])
local USER = ARGV[5]
local IDX = KEYS[1]
local DEV = P .. 'dev'
local LOG = P .. 'log'
local CHANNEL = P .. 'ch'

local function session_key(sid) return P .. 's:' .. sid end
local function tomb_key(sid) return P .. 't:' .. sid end

local function load_session(sid)
  local flat = redis.call('HGETALL', session_key(sid))
  if #flat == 0 then return nil end
  local rec = {}
  for i = 1, #flat, 2 do rec[flat[i]] = flat[i + 1] end
  for _, f in ipairs({'created_ms', 'seen_ms', 'max_ms', 'idle_ms'}) do
    rec[f] = tonumber(rec[f])
  end
  return rec
end

local function deadline(rec)
  return math.min(rec.seen_ms + rec.idle_ms, rec.max_ms)
end

-- Append the event to the user's capped log and publish it, with its log id, in one step.
local function emit(event)
  event.user = USER
  event.at = NOW
  local id = redis.call('XADD', LOG, 'MAXLEN', '~', LOG_LEN, '*', 'e', cjson.encode(event))
  event.id = id
  redis.call('PUBLISH', CHANNEL, cjson.encode(event))
  return id
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
  local tomb_until = (rec and rec.max_ms or NOW) + GRACE
  redis.call('SET', tomb_key(sid), cjson.encode({reason = reason, at = NOW, by = by}),
    'PXAT', tomb_until)
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
