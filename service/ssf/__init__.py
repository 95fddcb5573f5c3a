"""Shared signals: Sessionwire as an OpenID SSF 1.0 transmitter of CAEP 1.0 session events
(docs/SSF.md). Signing keys and SETs, receivers and their tokens, streams."""
