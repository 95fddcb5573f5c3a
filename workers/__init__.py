"""The worker process: WebSocket push gateway plus background duties (expiry sweeper)."""
