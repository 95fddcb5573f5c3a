"""Events out: webhook endpoints, their messages, retry rules and URL policy (docs/EVENTS.md)."""
