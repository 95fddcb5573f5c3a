-- Revoke sessions. Arguments: `mode` ('one', 'others' or 'all'), `target` (the session for
-- 'one', the caller's own for 'others'), `reason`, `by` (the device that did it, or null:
-- the admin API, a password change), `guard_ms`, the fresh-session guard (0: off), and
-- `credentials` ('', or the digest of a password hash just replaced or removed: no sign-in
-- checked against it opens a session from now on; the user's last `max_credentials` are
-- kept for `credentials_ms`).
-- While the session of the device asking (`by` not null) is younger than `guard_ms`, it may
-- not end one older than itself (it may always end itself and newer ones). That is judged
-- here, against the very records the revoke deletes, so no session can come, go or age
-- between check and revoke. Returns {'ok', revoked ids} (no ids for 'one': there was no
-- such session), {'too_new', ms until it may}, or, under the guard, {'gone'} when the
-- asking device's own session has ended meanwhile (its age is then unknown).
local caller = A.by ~= cjson.null and A.by.session_id or nil

local targets = {}
if A.mode == 'one' then
  targets = {A.target}
else
  for _, sid in ipairs(redis.call('ZRANGE', IDX, 0, -1)) do
    if A.mode == 'all' or sid ~= A.target then table.insert(targets, sid) end
  end
end

if caller and A.guard_ms > 0 then
  local me = load_session(caller)
  if not me then return {'gone'} end
  local may_from = me.created_ms + A.guard_ms
  if may_from > NOW then
    for _, sid in ipairs(targets) do
      local rec = sid ~= caller and load_session(sid)
      if rec and rec.created_ms < me.created_ms then return {'too_new', may_from - NOW} end
    end
  end
end

if A.credentials ~= '' then
  redis.call('ZADD', CREDS, NOW, A.credentials)
  redis.call('ZREMRANGEBYRANK', CREDS, 0, -A.max_credentials - 1)
  redis.call('PEXPIRE', CREDS, A.credentials_ms)
end
local revoked = {}
for _, sid in ipairs(targets) do append(revoked, revoke(sid, A.reason, A.by)) end
return {'ok', revoked}
