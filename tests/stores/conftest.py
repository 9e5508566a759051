"""Fixtures for the event-store tests: the same tests run against SQLite and PostgreSQL.

PostgreSQL: the server on 127.0.0.1:5432 when it answers (one uniquely named database per test session, one
schema per test, all dropped afterwards); otherwise a throw-away cluster from the local PostgreSQL binaries;
otherwise the postgres-marked tests skip and say what is missing (shown by ``pytest -ra``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import quote

import psycopg
import pytest

from abharness.stores import open_store
from abharness.stores.base import EventStore
from abharness.stores.pgtemp import TempCluster, create_database, drop_database, find_bindir, server_answers

SYSTEM_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """URL of the maintenance database of a PostgreSQL server the tests may create databases on."""
    if server_answers(SYSTEM_SERVER):
        yield SYSTEM_SERVER
        return
    if find_bindir() is None:
        pytest.skip(
            "PostgreSQL not available: nothing answers on 127.0.0.1:5432 and no initdb/pg_ctl found under "
            "/usr/lib/postgresql/*/bin or on PATH (install the postgresql package, or run .ci/run)"
        )
    try:
        cluster = TempCluster().start()
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"PostgreSQL not available: starting a throw-away cluster failed: {exc}")
    try:
        yield cluster.url()
    finally:
        cluster.cleanup()


@pytest.fixture(scope="session")
def pg_database_url(pg_admin_url: str) -> Iterator[str]:
    """A database created for this test session (dropped at the end)."""
    name = create_database(pg_admin_url, prefix="abh_stores")
    base = pg_admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        drop_database(pg_admin_url, name)


@pytest.fixture()
def pg_url(pg_database_url: str) -> Iterator[str]:
    """A URL whose search_path is a fresh schema, so each test starts from an empty database."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{pg_database_url}?options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(pg_database_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """The URL of an empty store of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture()
def store(store_url: str) -> Iterator[EventStore]:
    """A migrated, empty store of each kind."""
    s = open_store(store_url)
    try:
        yield s
    finally:
        s.close()
