-- All live sessions of the user, most recently seen first, as JSON strings.
local out = {}
for _, sid in ipairs(redis.call('ZREVRANGE', IDX, 0, -1)) do
  local rec = load_session(sid)
  if rec and deadline(rec) > NOW then table.insert(out, cjson.encode(rec)) end
end
return out
