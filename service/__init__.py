"""Sessionwire's REST API, and the session core that the worker shares.

Layers, each importing only those below it (tests/test_layers.py holds the rule):
settings, clock, backoff (here) <- wire <- engine <- sessions <- users <- runtime <- api.
"""
