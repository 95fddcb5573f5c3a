"""Who may sign in: the users file and its command, passwords, the sign-in limiter and
device tokens."""
