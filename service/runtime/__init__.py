"""Running a process: start-up, supervision, limits, credentials from requests, cleanup
contexts, health handlers, the app keys both apps share."""
