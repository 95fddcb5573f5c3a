"""Clients of the contract; they know only the wire: the terminal client (terminal/) and
the browser library (web/, an ES module the API serves as this package's data)."""
