"""Clients of the contract; they know only the wire."""
