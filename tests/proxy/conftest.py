"""Fixtures for the proxy tests: the fake backends, store and writer come from tests/conftest.py."""
