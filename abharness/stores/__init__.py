"""Event stores: where impressions, clicks and admin actions are kept, and where per-unit sums are computed.

``open_store(url)`` picks the implementation from the URL scheme and brings the schema up to date:

    sqlite:///relative/path/events.db    SQLite file, path relative to the working directory
    sqlite:////absolute/path/events.db   SQLite file, absolute path (four slashes)
    sqlite:///:memory:                   private in-memory SQLite database (tests)
    postgresql://user@host:port/dbname   PostgreSQL (also postgres://)
    parquet:///relative/dir              read-only: a Parquet directory written by ``abharness export``, read
    parquet:////absolute/dir             through DuckDB (``abharness.stores.parquet``)
    nats://host:port/STREAM?subject=S    write-only: publishes events to NATS JetStream with acks
                                         (``abharness.stores.nats``); ``abharness ingest`` fills a database
"""

from __future__ import annotations

from abharness.errors import ConfigError
from abharness.stores.base import EventStore, WriteResult

__all__ = ["open_store", "EventStore", "WriteResult", "VALID_SCHEMES"]

VALID_SCHEMES: tuple[str, ...] = ("sqlite:///", "postgresql://", "postgres://", "parquet:///", "nats://")


def open_store(url: str, *, migrate: bool = True) -> EventStore:
    """Open the event store named by ``url`` and (by default) migrate its schema to the latest version.

    Raises ``ConfigError`` for a URL with an unknown scheme and ``StoreError`` when the store cannot be opened
    or migrated.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(
            f"store URL {url!r} is empty; use one of {', '.join(VALID_SCHEMES)} "
            "(for example sqlite:///events.db)"
        )
    url = url.strip()
    store: EventStore
    if url.startswith("sqlite:///"):
        from abharness.stores.sqlite import SQLiteStore

        path = url[len("sqlite:///") :]
        if not path:
            raise ConfigError(
                f"store URL {url!r} names no file; write sqlite:///events.db (relative), "
                "sqlite:////abs/events.db (absolute) or sqlite:///:memory:"
            )
        store = SQLiteStore(path, url=url)
    elif url.startswith(("postgresql://", "postgres://")):
        from abharness.stores.postgres import PostgresStore

        store = PostgresStore(url)
    elif url.startswith("parquet:///"):
        from abharness.stores.parquet import ParquetStore

        path = url[len("parquet:///") :]
        if not path:
            raise ConfigError(f"store URL {url!r} names no directory; write parquet:///export (relative) or "
                              "parquet:////abs/export (absolute)")
        store = ParquetStore(path, url=url)
    elif url.startswith("nats://"):
        from abharness.stores.nats import NatsStore

        store = NatsStore(url)
    else:
        scheme = url.split(":", 1)[0] if ":" in url else url
        raise ConfigError(
            f"store URL {url!r} has an unknown scheme {scheme!r}; valid schemes: {', '.join(VALID_SCHEMES)} "
            "(for example sqlite:///events.db or postgresql://user@127.0.0.1:5432/abharness)"
        )
    if migrate:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store
