"""What clients see: the wire schemas, the socket's messages, its close codes."""
