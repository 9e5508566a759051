"""Schema and versioned migrations for the event stores (SQLite and PostgreSQL dialects).

Each migration is a numbered list of statements per dialect, applied in one transaction together with the row
that records it in ``schema_migrations``. A database is upgraded by applying, in order, every migration above
its recorded version; a database newer than this code is refused. Never edit a released migration: add one.

History
    1  tables impressions, clicks, audit; time index for replay; audit entries keyed by a content hash.
    2  aggregation: ``impressions.has_error`` (backfilled from ``error``), a covering index on
       (experiment, unit, arm, ...) so per-unit sums read the index rather than the wide rows, and a clicks index
       ordered for the first-click window.
    3  ``heartbeat`` (one row per writer process): the readiness probe commits a write there, which proves the
       store can take a write (a read-only file, a full disk or a read-only standby fail it).
    4  ``feedback``: browser signals per shown result (seen, dwell), keyed by (impression, kind, doc).
    5  fast analysis: ``impression_facts`` (one narrow row per impression with its click summary: click count,
       first click time and position, best position) and ``unit_rollup`` (per-unit sums per UTC day), both
       kept up to date by ``write_batch`` in the batch's transaction and backfilled here from the existing rows.
       See ``abharness.stores.rollup``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from abharness.stores import rollup

__all__ = ["Dialect", "Migration", "MIGRATIONS", "LATEST_VERSION", "MIGRATIONS_TABLE_DDL"]

Dialect = Literal["sqlite", "postgresql"]


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: statements for each dialect."""

    version: int
    description: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]

    def statements(self, dialect: Dialect) -> tuple[str, ...]:
        """The statements for ``dialect``."""
        return self.sqlite if dialect == "sqlite" else self.postgresql


MIGRATIONS_TABLE_DDL: dict[str, str] = {
    "sqlite": (
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at REAL NOT NULL)"
    ),
    "postgresql": (
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
    ),
}

_V1_SQLITE = (
    """CREATE TABLE impressions (
        impression_id TEXT PRIMARY KEY,
        experiment_id TEXT NOT NULL,
        ts REAL NOT NULL,
        unit_id TEXT NOT NULL,
        arm TEXT NOT NULL,
        mode TEXT NOT NULL,
        query TEXT NOT NULL,
        k INTEGER NOT NULL,
        results TEXT NOT NULL,
        fingerprints TEXT NOT NULL DEFAULT '{}',
        latency_ms REAL NOT NULL DEFAULT 0,
        fallback INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        shadow_results TEXT,
        context TEXT NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX impressions_experiment_ts ON impressions (experiment_id, ts, impression_id)",
    """CREATE TABLE clicks (
        impression_id TEXT NOT NULL,
        doc_id TEXT NOT NULL,
        experiment_id TEXT NOT NULL,
        unit_id TEXT NOT NULL,
        arm TEXT NOT NULL,
        ts REAL NOT NULL,
        position INTEGER NOT NULL,
        team TEXT,
        dwell_ms REAL,
        PRIMARY KEY (impression_id, doc_id)
    )""",
    """CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        entry_key TEXT NOT NULL UNIQUE,
        ts REAL NOT NULL,
        experiment_id TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        payload TEXT NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX audit_experiment_ts ON audit (experiment_id, ts)",
)

_V1_POSTGRESQL = (
    """CREATE TABLE impressions (
        impression_id TEXT PRIMARY KEY,
        experiment_id TEXT NOT NULL,
        ts DOUBLE PRECISION NOT NULL,
        unit_id TEXT NOT NULL,
        arm TEXT NOT NULL,
        mode TEXT NOT NULL,
        query TEXT NOT NULL,
        k INTEGER NOT NULL,
        results JSONB NOT NULL,
        fingerprints JSONB NOT NULL DEFAULT '{}',
        latency_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
        fallback INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        shadow_results JSONB,
        context JSONB NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX impressions_experiment_ts ON impressions (experiment_id, ts, impression_id)",
    """CREATE TABLE clicks (
        impression_id TEXT NOT NULL,
        doc_id TEXT NOT NULL,
        experiment_id TEXT NOT NULL,
        unit_id TEXT NOT NULL,
        arm TEXT NOT NULL,
        ts DOUBLE PRECISION NOT NULL,
        position INTEGER NOT NULL,
        team TEXT,
        dwell_ms DOUBLE PRECISION,
        PRIMARY KEY (impression_id, doc_id)
    )""",
    """CREATE TABLE audit (
        id BIGSERIAL PRIMARY KEY,
        entry_key TEXT NOT NULL UNIQUE,
        ts DOUBLE PRECISION NOT NULL,
        experiment_id TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        payload JSONB NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX audit_experiment_ts ON audit (experiment_id, ts)",
)

_V2_SQLITE = (
    "ALTER TABLE impressions ADD COLUMN has_error INTEGER NOT NULL DEFAULT 0",
    "UPDATE impressions SET has_error = CASE WHEN error IS NULL THEN 0 ELSE 1 END",
    # Covering index: per-unit sums never touch the wide rows (results JSON), and rows come out grouped.
    "CREATE INDEX impressions_unit_agg ON impressions "
    "(experiment_id, unit_id, arm, mode, ts, k, latency_ms, fallback, has_error)",
    "CREATE INDEX clicks_experiment_first ON clicks (experiment_id, impression_id, ts, position)",
)

_V2_POSTGRESQL = (
    "ALTER TABLE impressions ADD COLUMN has_error INTEGER NOT NULL DEFAULT 0",
    "UPDATE impressions SET has_error = CASE WHEN error IS NULL THEN 0 ELSE 1 END WHERE error IS NOT NULL",
    "CREATE INDEX impressions_unit_agg ON impressions (experiment_id, unit_id, arm) "
    "INCLUDE (mode, ts, k, latency_ms, fallback, has_error)",
    "CREATE INDEX clicks_experiment_first ON clicks (experiment_id, impression_id, ts, position)",
)

_V3 = ("CREATE TABLE heartbeat (replica TEXT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL)",)

_V4_SQLITE = (
    """CREATE TABLE feedback (
        impression_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        doc_id TEXT NOT NULL,
        experiment_id TEXT NOT NULL,
        unit_id TEXT NOT NULL,
        arm TEXT NOT NULL,
        ts REAL NOT NULL,
        position INTEGER NOT NULL,
        value REAL,
        PRIMARY KEY (impression_id, kind, doc_id)
    )""",
    "CREATE INDEX feedback_experiment_ts ON feedback (experiment_id, ts)",
)

_V4_POSTGRESQL = (
    """CREATE TABLE feedback (
        impression_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        doc_id TEXT NOT NULL,
        experiment_id TEXT NOT NULL,
        unit_id TEXT NOT NULL,
        arm TEXT NOT NULL,
        ts DOUBLE PRECISION NOT NULL,
        position INTEGER NOT NULL,
        value DOUBLE PRECISION,
        PRIMARY KEY (impression_id, kind, doc_id)
    )""",
    "CREATE INDEX feedback_experiment_ts ON feedback (experiment_id, ts)",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "impressions, clicks, audit", _V1_SQLITE, _V1_POSTGRESQL),
    Migration(2, "aggregation indexes and impressions.has_error", _V2_SQLITE, _V2_POSTGRESQL),
    Migration(3, "heartbeat table for the readiness probe's write", _V3, _V3),
    Migration(4, "feedback (seen, dwell)", _V4_SQLITE, _V4_POSTGRESQL),
    Migration(5, "impression_facts and unit_rollup (fast analysis), backfilled", rollup.migration_statements("sqlite"),
              rollup.migration_statements("postgresql")),
    Migration(6, "unit_rollup covering index for the analysis's ordered read (PostgreSQL)",
              rollup.read_index_statements("sqlite"), rollup.read_index_statements("postgresql")),
)

LATEST_VERSION: int = MIGRATIONS[-1].version


def pending(current: int, target: int | None = None) -> list[Migration]:
    """Migrations to apply to go from ``current`` to ``target`` (default: latest)."""
    goal = LATEST_VERSION if target is None else target
    return [m for m in MIGRATIONS if current < m.version <= goal]
