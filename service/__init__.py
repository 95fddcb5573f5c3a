"""Sessionwire's stateless REST API."""
