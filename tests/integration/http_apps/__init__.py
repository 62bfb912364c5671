"""Backends, clients and fixtures for the HTTP-mode integration tests
(tests/integration/test_http_*.py)."""
