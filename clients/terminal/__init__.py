"""The `sessionwire` command: a device client for terminals."""
