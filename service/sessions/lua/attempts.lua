-- Sign-in attempts in a fixed window, KEYS[1]: `failed` ones, and `pending` ones whose
-- password is being checked. ARGV[1] is JSON: `now`, `window_ms`, `limit`, and `op`:
--   'take'      reserve an attempt: 'limited' when `limit` failed in the window, 'busy'
--               when failed plus pending reach it, else 'taken';
--   'failed'    a pending attempt failed;
--   'succeeded' a pending attempt succeeded (and, with `clear`, failures are forgiven);
--   'cancel'    a pending attempt never tested its password.
-- Returns {outcome, ms until the window ends}. The window is judged by `now` (the caller's
-- clock); the key's TTL only cleans up. A counter left with nothing counted is deleted, so
-- an attempt that was refused, cancelled or succeeded leaves no key behind.
--
-- With KEYS[2] (the user's failure record, on the same slot as a user's or a device's
-- counter) and `record` = {ip, cap, keep_ms, lock}, failures and refusals are also written
-- there for the owner to see, aggregated: one entry per window (from its first attempt),
-- never one per guess. `lock` says whether this counter's limit locks the username.
local A = cjson.decode(ARGV[1])
local f = redis.call('HMGET', KEYS[1], 'failed', 'pending', 'ends')
local failed, pending, ends = tonumber(f[1]) or 0, tonumber(f[2]) or 0, tonumber(f[3]) or 0
if ends <= A.now then
  if A.op ~= 'take' then return {'done', 0} end  -- its window, and what it counted, is gone
  failed, pending, ends = 0, 0, A.now + A.window_ms
end
local left = ends - A.now

local MAX_IPS = 5  -- addresses named in one entry; the rest are counted in `other_ips`

-- Add one attempt from A.record.ip to the open entry (or a new one) of the failure record.
local function note(field, locked_until)
  local R = A.record
  if not R then return end
  local head = redis.call('LINDEX', KEYS[2], 0)
  local entry = head and cjson.decode(head)
  local open = entry and A.now < entry.first + A.window_ms
  if not open then
    entry = {first = A.now, failed = 0, refused = 0, locked_until = 0, ips = {}, other_ips = 0}
  end
  entry.last = A.now
  entry[field] = entry[field] + 1
  if locked_until and R.lock then entry.locked_until = math.max(entry.locked_until, locked_until) end
  local known = false
  for _, source in ipairs(entry.ips) do
    if source.ip == R.ip then source.attempts = source.attempts + 1; known = true end
  end
  if not known then
    if #entry.ips < MAX_IPS then
      table.insert(entry.ips, {ip = R.ip, attempts = 1})
    else
      entry.other_ips = entry.other_ips + 1
    end
  end
  if open then
    redis.call('LSET', KEYS[2], 0, cjson.encode(entry))
  else
    redis.call('LPUSH', KEYS[2], cjson.encode(entry))
    redis.call('LTRIM', KEYS[2], 0, R.cap - 1)
  end
  redis.call('PEXPIRE', KEYS[2], R.keep_ms)
end

if A.op == 'take' then
  if failed >= A.limit then
    note('refused', ends)
    return {'limited', left}
  end
  if failed + pending >= A.limit then return {'busy', left} end
  pending = pending + 1
else
  pending = math.max(pending - 1, 0)
  if A.op == 'failed' then
    failed = failed + 1
    note('failed', failed >= A.limit and ends or nil)
  end
  if A.op == 'succeeded' and A.clear then failed = 0 end
end
if failed == 0 and pending == 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'failed', failed, 'pending', pending, 'ends', ends)
  redis.call('PEXPIRE', KEYS[1], left)
end
return {A.op == 'take' and 'taken' or 'done', left}
