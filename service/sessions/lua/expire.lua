-- Sweep the user's sessions past their deadline (reason 'expired'). Argument: `session_id`,
-- the session the sweeper was due to look at. Returns {revoked ids, that session's deadline
-- in ms, or -1 when it is gone}, so the sweeper can drop or reschedule its due-index entry.
local revoked = expire_due({})
local rec = load_session(A.session_id)
return {revoked, rec and deadline(rec) or -1}
