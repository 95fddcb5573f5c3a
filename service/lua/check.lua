-- Check a session on a request and, at most once per touch interval, record activity.
-- ARGV[6] = session id, ARGV[7] = touch interval (ms).
-- Returns {1, session JSON} when live, {0, tombstone JSON or false} when not.
-- Touching only an existing record means a revoke can never be undone by a racing request.
local sid, touch_ms = ARGV[6], tonumber(ARGV[7])
local rec = load_session(sid)
if rec and deadline(rec) <= NOW then
  revoke(sid, 'expired', cjson.null)
  rec = nil
end
if not rec then
  return {0, redis.call('GET', tomb_key(sid))}
end
if NOW - rec.seen_ms >= touch_ms then
  rec.seen_ms = NOW
  redis.call('HSET', session_key(sid), 'seen_ms', NOW)
  redis.call('PEXPIREAT', session_key(sid), deadline(rec) + GRACE)
  redis.call('ZADD', IDX, 'XX', NOW, sid)
end
return {1, cjson.encode(rec)}
