-- Which of the user's sessions hold a live socket. KEYS[9]: the user's presence, a ZSET of
-- '<session id> <socket id>' -> until (ms), one member per socket on any worker process.
-- Arguments: `alive`, the members of the sockets one worker holds open (each one's presence
-- runs until `until`), `gone`, members of sockets it closed, `notice_ms` (at most one
-- online/offline notice per session that often) and `touch_ms` (a session's last seen moves
-- that often while a socket is open). Members past their time (a worker that died) go.
-- A session's `online_until` is the presence its sockets had (0: none), so a read of the
-- record alone says whether it is online; `told` and `told_ms` are the last notice. A change
-- within `notice_ms` of the last notice is told later, by whichever call comes after the
-- window (every worker holding a socket of the user calls in periodically), so the last
-- state always arrives. Returns the earliest time a notice waits for, or 0.
local P = KEYS[9]
for _, m in ipairs(A.gone) do redis.call('ZREM', P, m) end
for _, m in ipairs(A.alive) do redis.call('ZADD', P, A['until'], m) end
redis.call('ZREMRANGEBYSCORE', P, '-inf', NOW)
local live = {}
for _, m in ipairs(redis.call('ZRANGE', P, 0, -1)) do live[string.match(m, '^(%S+)')] = true end
local mine = {}
for _, m in ipairs(A.alive) do mine[string.match(m, '^(%S+)')] = true end
if #A.alive > 0 then redis.call('PEXPIREAT', P, A['until'] + GRACE) end

local waits = 0
for _, sid in ipairs(redis.call('ZRANGE', IDX, 0, -1)) do
  local key = session_key(sid)
  local f = redis.call('HMGET', key, 'online_until', 'told', 'told_ms', 'seen_ms', 'idle_ms',
                       'max_ms')
  local seen, idle, max = tonumber(f[4]), tonumber(f[5]), tonumber(f[6])
  if seen and math.min(seen + idle, max) > NOW then
    local online_until, told, told_ms = tonumber(f[1] or 0), f[2] or '0', tonumber(f[3] or 0)
    if mine[sid] then
      redis.call('HSET', key, 'online_until', math.max(online_until, A['until']))
      if NOW - seen >= A.touch_ms then
        redis.call('HSET', key, 'seen_ms', NOW)
        redis.call('PEXPIREAT', key, math.min(NOW + idle, max) + GRACE)
        redis.call('ZADD', IDX, 'XX', NOW, sid)
      end
    elseif not live[sid] and online_until > 0 then
      redis.call('HSET', key, 'online_until', 0)
    end
    local state = live[sid] and '1' or '0'
    if state ~= told then
      if NOW - told_ms >= A.notice_ms then
        redis.call('HSET', key, 'told', state, 'told_ms', NOW)
        local rec = load_session(sid)
        rec.told, rec.told_ms = nil, nil
        redis.call('SPUBLISH', CHANNEL, cjson.encode({
          type = state == '1' and 'session.online' or 'session.offline', id = '',
          user = A.user, session_id = sid, at = NOW, reason = cjson.null, by = cjson.null,
          session = rec}))
      elseif waits == 0 or told_ms + A.notice_ms < waits then
        waits = told_ms + A.notice_ms
      end
    end
  end
end
return waits
