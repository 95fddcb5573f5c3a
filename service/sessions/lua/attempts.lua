-- Sign-in attempts in a fixed window, KEYS[1]: `failed` ones, and `pending` ones whose
-- password is being checked. ARGV[1] is JSON: `now`, `window_ms`, `limit`, and `op`:
--   'take'      reserve an attempt: 'limited' when `limit` failed in the window, 'busy'
--               when failed plus pending reach it, else 'taken';
--   'failed'    a pending attempt failed;
--   'succeeded' a pending attempt succeeded (and, with `clear`, failures are forgiven);
--   'cancel'    a pending attempt never tested its password;
--   'check'     writes nothing: 'limited' when `limit` failed in the window, else 'ok'.
-- Returns {outcome, ms until the window ends}. The window is judged by `now` (the caller's
-- clock); the key's TTL only cleans up.
local A = cjson.decode(ARGV[1])
local f = redis.call('HMGET', KEYS[1], 'failed', 'pending', 'ends')
local failed, pending, ends = tonumber(f[1]) or 0, tonumber(f[2]) or 0, tonumber(f[3]) or 0
if ends <= A.now then
  if A.op ~= 'take' then return {'done', 0} end  -- its window, and what it counted, is gone
  failed, pending, ends = 0, 0, A.now + A.window_ms
end
local left = ends - A.now
if A.op == 'check' then return {failed >= A.limit and 'limited' or 'ok', left} end
if A.op == 'take' then
  if failed >= A.limit then return {'limited', left} end
  if failed + pending >= A.limit then return {'busy', left} end
  pending = pending + 1
else
  pending = math.max(pending - 1, 0)
  if A.op == 'failed' then failed = failed + 1 end
  if A.op == 'succeeded' and A.clear then failed = 0 end
end
redis.call('HSET', KEYS[1], 'failed', failed, 'pending', pending, 'ends', ends)
redis.call('PEXPIRE', KEYS[1], left)
return {A.op == 'take' and 'taken' or 'done', left}
