"""``open_store(url)``: scheme dispatch, path handling, and errors that name the value and the fix."""

from __future__ import annotations

import pytest

from abharness.errors import ConfigError, StoreError
from abharness.stores import open_store
from abharness.stores.pgtemp import free_port
from abharness.stores.postgres import PostgresStore, redact
from abharness.stores.schema import LATEST_VERSION
from abharness.stores.sqlite import SQLiteStore


@pytest.mark.parametrize("url", ["mysql://u@h/db", "events.db", "sqlite://events.db", "file:///x.db"])
def test_unknown_scheme_lists_the_valid_ones(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_store(url)
    message = str(info.value)
    assert repr(url) in message
    assert "sqlite:///" in message and "postgresql://" in message


@pytest.mark.parametrize("url", ["", "   ", "sqlite:///"])
def test_empty_url_or_path_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="sqlite:///"):
        open_store(url)


def test_relative_sqlite_path_is_relative_to_the_working_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///data/run1/events.db")
    try:
        assert isinstance(store, SQLiteStore)
        assert (tmp_path / "data" / "run1" / "events.db").is_file()
        assert store.schema_version() == LATEST_VERSION
    finally:
        store.close()


def test_absolute_sqlite_path_uses_four_slashes(tmp_path) -> None:
    target = tmp_path / "abs.db"
    store = open_store(f"sqlite:///{target}")
    store.close()
    assert str(target).startswith("/") and target.is_file()


def test_memory_store_without_migration_has_no_schema() -> None:
    store = open_store("sqlite:///:memory:", migrate=False)
    try:
        assert store.schema_version() == 0
        with pytest.raises(StoreError, match="schema version 0"):
            store.ping()
    finally:
        store.close()


def test_unwritable_sqlite_location_is_a_store_error(tmp_path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="not-a-dir"):
        open_store(f"sqlite:///{blocker / 'events.db'}")


def test_unreachable_postgres_is_a_store_error_without_the_password() -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://bob:s3cret@127.0.0.1:{port}/events"
    with pytest.raises(StoreError) as info:
        open_store(url)
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "s3cret" not in message


def test_postgres_scheme_aliases_and_redaction() -> None:
    assert redact("postgresql://bob:pw@db.example:6543/ev") == "postgresql://bob@db.example:6543/ev"
    store = open_store(f"postgres://127.0.0.1:{free_port()}/x", migrate=False)
    try:
        assert isinstance(store, PostgresStore)
    finally:
        store.close()
