"""The core-flow integration tests on Apache Kafka and PostgreSQL containers."""

import pytest

from tests.integration.test_flow import *  # noqa: F403 - the very same tests, other backends

pytestmark = [pytest.mark.integration, pytest.mark.docker]  # noqa: F405
