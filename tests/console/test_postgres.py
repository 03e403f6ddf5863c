"""The console on PostgreSQL: every read route as every role, a bank's rows only, the 404s."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.console import test_payments, test_permissions
from tests.console.conftest import ROLES, Console, make_console

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def console(request: pytest.FixtureRequest) -> Iterator[Console]:
    # postgres_url is function-scoped: make one database for the module by hand, the same way
    import uuid

    import psycopg

    from tests.conftest import POSTGRES_ADMIN_URL, postgres_available

    reason = postgres_available()
    if reason:
        pytest.fail(reason)
    name = f"sakk_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    made = make_console(f"{base}/{name}")
    yield made
    made.engine.dispose()
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


READS = sorted(r for r in test_permissions.MATRIX if r[0] == "GET")


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", READS, ids=lambda r: f"{r[0]} {r[1]}")
def test_each_read_route_as_each_role(console: Console, route, role):
    test_permissions.test_each_role_is_allowed_or_refused_as_the_matrix_says(console, route, role)


@pytest.mark.parametrize("user,bank", [("b007", "007"), ("b011", "011"), ("b310", "310")])
def test_a_bank_reads_only_its_own_rows(console: Console, user, bank):
    test_permissions.test_a_bank_reads_only_its_own_rows_in_every_list(console, user, bank)


@pytest.mark.parametrize("suffix", ["", "/trace"])
def test_another_banks_payment_is_as_missing(console: Console, suffix):
    test_payments.test_another_banks_payment_is_answered_as_one_that_does_not_exist(console, suffix)


def test_search_filters(console: Console):
    test_payments.test_search_filters_by_reference_last_four_and_time(console)


def test_the_overview(console: Console):
    test_permissions.test_the_overview_counts_what_each_role_may_see(console)
