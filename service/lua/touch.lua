-- Record activity on a session, at most once per touch interval (the caller decides).
-- KEYS = session record, user index; ARGV = now (ms), grace (ms), session id.
-- Returns 1 when touched, 0 when the record is gone, 2 when it is past its deadline.
-- It never re-creates a record, so a revoke racing a request can't be undone.
local f = redis.call('HMGET', KEYS[1], 'seen_ms', 'max_ms', 'idle_ms')
if not f[1] then return 0 end
local now, max_ms, idle = tonumber(ARGV[1]), tonumber(f[2]), tonumber(f[3])
if math.min(tonumber(f[1]) + idle, max_ms) <= now then return 2 end
redis.call('HSET', KEYS[1], 'seen_ms', now)
redis.call('PEXPIREAT', KEYS[1], math.min(now + idle, max_ms) + tonumber(ARGV[2]))
redis.call('ZADD', KEYS[2], 'XX', now, ARGV[3])
return 1
