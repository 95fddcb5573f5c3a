-- Rename a session's device. Arguments: `session_id`, `device_name`, `by` (the device that
-- did it, or null: the admin API). Returns the record as JSON, or false when there is no
-- such live session. The user's devices are told (session.renamed, logged, no outbox),
-- unless the name is the one it has: repeating a name must not fill the activity log.
local rec = load_session(A.session_id)
if not rec or deadline(rec) <= NOW then return false end
if rec.device_name == A.device_name then return cjson.encode(rec) end
rec.device_name = A.device_name
redis.call('HSET', session_key(A.session_id), 'device_name', A.device_name)
tell({type = 'session.renamed', session_id = A.session_id, reason = cjson.null, by = A.by,
      session = rec})
return cjson.encode(rec)
