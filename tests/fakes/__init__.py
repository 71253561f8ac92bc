"""Fake servers on 127.0.0.1 that the real bot code talks to over HTTP."""
