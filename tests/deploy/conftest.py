"""Fixtures of the deployment tests; the helpers live in ``tests/deploy/support.py``."""

from tests.deploy.support import prometheus_factory  # noqa: F401 - a fixture, used by name
