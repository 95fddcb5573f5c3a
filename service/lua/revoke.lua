-- Revoke sessions. ARGV[6] = mode ('one', 'others', 'all'), ARGV[7] = the target session
-- ('one') or the caller's session ('others'), ARGV[8] = reason, ARGV[9] = by (JSON).
-- Returns the list of revoked session ids; empty for 'one' means there was no such session.
local mode, target, reason = ARGV[6], ARGV[7], ARGV[8]
local by = cjson.decode(ARGV[9])
local revoked = {}
if mode == 'one' then
  return append(revoked, revoke(target, reason, by))
end
for _, sid in ipairs(redis.call('ZRANGE', IDX, 0, -1)) do
  if mode == 'all' or sid ~= target then
    append(revoked, revoke(sid, reason, by))
  end
end
return revoked
