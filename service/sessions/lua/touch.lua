-- Record activity on a session (the caller decides it is time: once per touch interval).
-- Argument: `session_id`. Returns 'touched', 'gone' (no record) or 'expired' (past its
-- deadline). It never re-creates a record, so a revoke racing a request can't be undone.
local rec = load_session(A.session_id)
if not rec then return 'gone' end
if deadline(rec) <= NOW then return 'expired' end
rec.seen_ms = NOW
redis.call('HSET', session_key(A.session_id), 'seen_ms', NOW)
redis.call('PEXPIREAT', session_key(A.session_id), deadline(rec) + GRACE)
redis.call('ZADD', IDX, 'XX', NOW, A.session_id)
return 'touched'
