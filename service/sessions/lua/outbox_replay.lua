-- Queue one endpoint's deliveries of a slot's retained events again, from an outbox id on.
-- KEYS: [1] the slot's outbox, [2] its delivery state (see outbox_intake.lua), [3] its wake
-- channel. ARGV[1]: JSON {endpoint, start, from, count, types, now}: events after the
-- endpoint's cursor (`start` where it has none) are left to intake, which takes them
-- anyway. A delivery already pending keeps its attempts; a new one is marked ':replay'. Returns {queued, the last id
-- read when there may be more (false otherwise)}.
local OUTBOX, STATE, WAKE = KEYS[1], KEYS[2], KEYS[3]
local A = cjson.decode(ARGV[1])
local cursor = redis.call('HGET', STATE, 'c:' .. A.endpoint) or A.start
local read = redis.call('XRANGE', OUTBOX, A.from, cursor, 'COUNT', A.count)
local wants = {}
for _, t in ipairs(A.types) do wants[t] = true end
local queued = 0
for _, entry in ipairs(read) do
  if #A.types == 0 or wants[entry[2][2]] then
    redis.call('HSETNX', STATE, 'p:' .. A.endpoint .. ':' .. entry[1], '0:' .. A.now .. ':replay')
    queued = queued + 1
  end
end
if queued > 0 then redis.call('SPUBLISH', WAKE, 'replay') end
if #read == A.count then return {queued, read[#read][1]} end
return {queued, false}
