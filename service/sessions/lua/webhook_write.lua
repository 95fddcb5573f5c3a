-- Change one webhook endpoint. KEYS: [1] the set of every endpoint's id, [2] the endpoint's
-- hash. ARGV: [1] the endpoint's id, [2] JSON {op: 'create'|'update'|'delete', set: {field:
-- value}, set_if_absent: {field: value}, unset: [field]}. An update or a delete of an
-- endpoint that does not exist (deleted meanwhile) does nothing and returns 0, else 1.
local ALL, ENDPOINT, ID = KEYS[1], KEYS[2], ARGV[1]
local A = cjson.decode(ARGV[2])
if A.op ~= 'create' and redis.call('EXISTS', ENDPOINT) == 0 then return 0 end
if A.op == 'delete' then
  redis.call('DEL', ENDPOINT)
  redis.call('SREM', ALL, ID)
  return 1
end
for field, value in pairs(A.set or {}) do redis.call('HSET', ENDPOINT, field, value) end
for field, value in pairs(A.set_if_absent or {}) do redis.call('HSETNX', ENDPOINT, field, value) end
for _, field in ipairs(A.unset or {}) do redis.call('HDEL', ENDPOINT, field) end
redis.call('SADD', ALL, ID)
return 1
