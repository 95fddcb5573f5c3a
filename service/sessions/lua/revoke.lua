-- Revoke sessions. Arguments: `mode` ('one', 'others' or 'all'), `target` (the session for
-- 'one', the caller's own for 'others'), `reason`, `by` (the device that did it, or null),
-- and `credentials` ('', or the digest of a password hash just replaced or removed: no
-- sign-in checked against it opens a session from now on; the user's last
-- `max_credentials` are kept for `credentials_ms`). Returns the revoked session ids;
-- empty for 'one' means there was no such session.
local revoked = {}
if A.credentials ~= '' then
  redis.call('ZADD', CREDS, NOW, A.credentials)
  redis.call('ZREMRANGEBYRANK', CREDS, 0, -A.max_credentials - 1)
  redis.call('PEXPIRE', CREDS, A.credentials_ms)
end
if A.mode == 'one' then
  return append(revoked, revoke(A.target, A.reason, A.by))
end
for _, sid in ipairs(redis.call('ZRANGE', IDX, 0, -1)) do
  if A.mode == 'all' or sid ~= A.target then
    append(revoked, revoke(sid, A.reason, A.by))
  end
end
return revoked
