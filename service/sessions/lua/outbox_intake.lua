-- Take one slot's new outbox events into each endpoint's pending deliveries.
-- KEYS: [1] the slot's outbox, [2] its delivery state, a HASH of 'c:<endpoint>' (the last
-- outbox id the endpoint took in) and 'p:<endpoint>:<outbox id>' ('<attempts>:<due ms>',
-- one per delivery not yet done). ARGV[1]: JSON {now, count, endpoints: [{id, start,
-- types}]}: `start` is the cursor of an endpoint new to this slot (just before it was
-- created), `types` the event types it takes (empty: every type). At most `count` events
-- per endpoint. Returns {more (1: some endpoint may have more to take), the entries read
-- (each once), then for each endpoint the ids it took}.
local OUTBOX, STATE = KEYS[1], KEYS[2]
local A = cjson.decode(ARGV[1])
local reads, seen, entries, taken, more = {}, {}, {}, {}, 0
for i, ep in ipairs(A.endpoints) do
  local cursor = redis.call('HGET', STATE, 'c:' .. ep.id) or ep.start
  local read = reads[cursor]
  if not read then  -- endpoints that are level share one read
    read = redis.call('XRANGE', OUTBOX, '(' .. cursor, '+', 'COUNT', A.count)
    reads[cursor] = read
  end
  local wants = {}
  for _, t in ipairs(ep.types) do wants[t] = true end
  local ids = {}
  for _, entry in ipairs(read) do
    local id, fields = entry[1], entry[2]  -- fields: 't', <type>, 'e', <event>
    if not seen[id] then
      seen[id] = true
      table.insert(entries, entry)
    end
    if #ep.types == 0 or wants[fields[2]] then
      redis.call('HSET', STATE, 'p:' .. ep.id .. ':' .. id, '0:' .. A.now)
      table.insert(ids, id)
    end
  end
  if #read > 0 then redis.call('HSET', STATE, 'c:' .. ep.id, read[#read][1]) end
  if #read == A.count then more = 1 end
  taken[i] = ids
end
return {more, entries, taken}
