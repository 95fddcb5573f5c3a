-- Create a session. Arguments: `session` (session_id, device_id, device_name, user_agent,
-- ip, and what records.StoredSession says of the device: browser, os, loc...), `idle_ms`, `max_age_ms`, `max_sessions`, `by` (the new device, named by the
-- 'replaced' and 'evicted' events), and `credentials` (for a password sign-in, the digest
-- of the password hash it checked; else ''). Returns {the record as JSON, revoked session
-- ids, the reason each of them ended}, or {false, {}, {}} when those credentials were
-- revoked since: nothing is written then.
local s = A.session
if A.credentials ~= '' and redis.call('ZSCORE', CREDS, A.credentials) then
  return {false, {}, {}}
end
local revoked = expire_due({})
local reasons = {}
for i = 1, #revoked do reasons[i] = 'expired' end
local function ended(sid, reason)
  if sid then table.insert(revoked, sid); table.insert(reasons, reason) end
end

if s.device_id ~= '' then
  local old = redis.call('HGET', DEV, s.device_id)
  if old then ended(revoke(old, 'replaced', A.by), 'replaced') end
end
-- Least recently seen first; make room for the new one.
while redis.call('ZCARD', IDX) >= A.max_sessions do
  local oldest = redis.call('ZRANGE', IDX, 0, 0)[1]
  ended(revoke(oldest, 'evicted', A.by), 'evicted')
end

-- `s` holds strings only (the device, its parsed User-Agent and location: records.py).
local rec = {}
for k, v in pairs(s) do rec[k] = v end
rec.created_ms, rec.seen_ms, rec.max_ms, rec.idle_ms = NOW, NOW, NOW + A.max_age_ms, A.idle_ms
rec.online_until = 0
local key = session_key(rec.session_id)
for k, v in pairs(rec) do redis.call('HSET', key, k, v) end
redis.call('PEXPIREAT', key, deadline(rec) + GRACE)
redis.call('ZADD', IDX, NOW, rec.session_id)
if rec.device_id ~= '' then redis.call('HSET', DEV, rec.device_id, rec.session_id) end
emit({type = 'session.created', session_id = rec.session_id, reason = cjson.null, by = A.by,
      session = rec})
return {cjson.encode(rec), revoked, reasons}
