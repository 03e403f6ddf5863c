"""The integration tests again, on real Apache Kafka and PostgreSQL containers (testcontainers).

These fixtures override the embedded broker and the local PostgreSQL for the
tests in this folder. Without a reachable Docker engine every test here skips,
saying so; the same tests run on the embedded broker and local PostgreSQL in
the parent folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

KAFKA_IMAGE = "apache/kafka:3.9.1"
POSTGRES_IMAGE = "postgres:16.4-alpine"


def docker_unreachable() -> str | None:
    """None when a Docker engine answers, else why not."""
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return None
    except Exception as exc:  # any failure means: no engine to run containers on
        return f"no Docker engine reachable ({type(exc).__name__}: {str(exc)[:120]})"


@pytest.fixture(scope="session")
def docker_engine() -> None:
    reason = docker_unreachable()
    if reason:
        pytest.skip(reason)


@dataclass(frozen=True)
class ContainerBroker:
    bootstrap_servers: str


@pytest.fixture(scope="session")
def broker(docker_engine: None) -> Iterator[ContainerBroker]:
    from testcontainers.kafka import KafkaContainer

    with KafkaContainer(KAFKA_IMAGE).with_kraft() as kafka:
        yield ContainerBroker(kafka.get_bootstrap_server())


@pytest.fixture(scope="session")
def postgres_container(docker_engine: None) -> Iterator[str]:
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer(POSTGRES_IMAGE, driver="psycopg") as pg:
        yield pg.get_connection_url()


@pytest.fixture(params=["postgresql"])
def database_url(postgres_container: str) -> Iterator[str]:
    """A fresh database per test inside the container."""
    import uuid

    import sqlalchemy as sa

    name = f"sakk_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_container, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield postgres_container.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()
