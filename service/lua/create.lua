-- Create a session. ARGV[6..] = session_id, device_id, device_name, user_agent, ip,
-- idle_ms, max_age_ms, max_sessions, by (JSON of the new device, for 'replaced'/'evicted').
-- Returns {session fields (flat), revoked session ids...} as {flat, revoked}.
local sid, device_id = ARGV[6], ARGV[7]
local idle_ms, max_age_ms, max_sessions = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
local by = cjson.decode(ARGV[14])
local revoked = expire_due({})

if device_id ~= '' then
  local old = redis.call('HGET', DEV, device_id)
  if old then append(revoked, revoke(old, 'replaced', by)) end
end
-- Least recently seen first; make room for the new one.
while redis.call('ZCARD', IDX) >= max_sessions do
  local oldest = redis.call('ZRANGE', IDX, 0, 0)[1]
  append(revoked, revoke(oldest, 'evicted', by))
end

local rec = {session_id = sid, device_id = device_id, device_name = ARGV[8],
             user_agent = ARGV[9], ip = ARGV[10], created_ms = NOW, seen_ms = NOW,
             max_ms = NOW + max_age_ms, idle_ms = idle_ms}
local key = session_key(sid)
for k, v in pairs(rec) do redis.call('HSET', key, k, v) end
redis.call('PEXPIREAT', key, deadline(rec) + GRACE)
redis.call('ZADD', IDX, NOW, sid)
if device_id ~= '' then redis.call('HSET', DEV, device_id, sid) end
emit({type = 'session.created', session_id = sid, reason = cjson.null, by = by, session = rec})
return {cjson.encode(rec), revoked}
