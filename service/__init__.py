"""Sessionwire's REST API, and the session core that the worker shares.

The core (keys, scripts, store, event log, lease, Redis connection, clock) is the only
place that knows how sessions live in Redis; `workers/` uses it and never builds a key.
"""
