"""The session core: keys, Lua scripts, records, the store, the event log, leases, tokens.
Nothing else builds a Redis key."""
