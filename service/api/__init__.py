"""The REST API: the app, its handlers, the page and its files."""
