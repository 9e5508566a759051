"""The write side of ``parquet:///DIR`` for ``abharness ingest``: each batch becomes durable Parquet files in the
layout of ``abharness export`` (``abharness.stores.parquet_export``), read by the ``parquet://`` store and Spark.

``ParquetSink(DIR).write_batch(events)`` groups the batch by table, experiment and UTC date (impressions by their
time, clicks and feedback by theirs), drops duplicates *within the batch* by the stores' keys (impression id;
(impression id, doc id); (impression id, kind, doc id); audit entry key; the first in the batch is kept, as
SQLite's ``INSERT ... ON CONFLICT DO NOTHING`` keeps it) and writes one file per group, rows in arrival order::

    DIR/<table>/experiment=<id>/date=YYYY-MM-DD/ingest-<time ns>-<writer>-<n>.parquet

The file name sorts in write order, so "the first stored wins" -- the rule of the database stores, e.g. for a
click sent twice with two timestamps -- is, for the reader, the first row of the first-written file holding the key.

Each file is written beside its final name (``.ingest-....parquet.tmp``, which no reader globs), ``fsync``-ed,
renamed into place, and its directory ``fsync``-ed (every directory created on the way too), so when
``write_batch`` returns the batch is on disk and only then does ingest ack it. A crash leaves at most a ``.tmp``
file (ignored by readers; ``ping`` reports none, and a restarted sink removes its own kind older than an hour).

Exactly-once *results* from at-least-once delivery: a batch redelivered after a crash between the rename and the
ack is written again into new files, so the same event can sit in two files. The reader removes those copies
(``abharness.stores.parquet``: every table is read through a view that keeps one row per key, the first stored
in the sense above), so every count and every sum the analysis reads sees each event once. ``write_batch`` counts
only the duplicates it saw in the batch itself; copies across files are not known at write time.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from abharness.core.events import AuditEntry, Click, Event, Feedback, Impression
from abharness.errors import ConfigError, StoreError
from abharness.stores import codec
from abharness.stores.base import WriteResult
from abharness.stores.parquet_export import SCHEMAS, partition_name

__all__ = ["KEYS", "ParquetSink"]

# The key of each table, the one the database stores deduplicate on (and the reader's views keep one row per).
KEYS: dict[str, tuple[str, ...]] = {
    "impressions": ("impression_id",),
    "clicks": ("impression_id", "doc_id"),
    "feedback": ("impression_id", "kind", "doc_id"),
    "audit": ("entry_key",),
}
_TMP_PREFIX = ".ingest-"
_STALE_TMP_S = 3600.0


def _date(ts: float) -> str:
    return dt.datetime.fromtimestamp(float(ts), tz=dt.timezone.utc).strftime("%Y-%m-%d")


def _row(event: Event) -> tuple[str, tuple[Any, ...]]:
    if isinstance(event, Impression):
        return "impressions", codec.impression_row(event)
    if isinstance(event, Click):
        return "clicks", codec.click_row(event)
    if isinstance(event, Feedback):
        return "feedback", codec.feedback_row(event)
    if isinstance(event, AuditEntry):
        return "audit", codec.audit_row(event)
    raise TypeError(f"ParquetSink got {type(event).__name__}; expected Impression, Click, Feedback or AuditEntry")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ParquetSink:
    """Batches of events -> durable Parquet files under ``root`` (see the module docstring)."""

    def __init__(self, root: str | Path, *, url: str | None = None, compression: str = "zstd") -> None:
        self.root = Path(root)
        self.url = url or f"parquet:///{root}"
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"--to {self.url!r}: {str(self.root)!r} is a file; name a directory for the Parquet files")
        self.compression = compression
        self._writer = uuid.uuid4().hex[:8]
        self._files = 0
        self._known_dirs: set[Path] = set()
        self._columns = {t: SCHEMAS[t].names for t in SCHEMAS}
        self._ts_index = {t: self._columns[t].index("ts") for t in SCHEMAS}  # the partition date comes from ts
        self._key_index = {t: tuple(self._columns[t].index(c) for c in KEYS[t]) for t in SCHEMAS}

    # -- EventStore write side ------------------------------------------------------------------------------
    def migrate(self) -> None:
        """Create the directory (durably) and remove ``.tmp`` files a crashed sink left more than an hour ago."""
        try:
            self._mkdirs(self.root)
        except OSError as exc:
            raise StoreError(f"store {self.url!r}: cannot create {str(self.root)!r} ({exc})") from exc
        cutoff = time.time() - _STALE_TMP_S
        for tmp in self.root.glob(f"*/experiment=*/date=*/{_TMP_PREFIX}*.tmp"):
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
            except OSError:  # another sink's file, gone meanwhile
                pass

    def ping(self) -> None:
        """Raise ``StoreError`` when the directory is gone or not writable."""
        if not self.root.is_dir() or not os.access(self.root, os.W_OK | os.X_OK):
            raise StoreError(f"store {self.url!r}: directory {str(self.root)!r} is missing or not writable")

    def write_batch(self, events: Sequence[Event]) -> WriteResult:
        """Write the batch as one durable file per (table, experiment, date); returns rows written and the
        duplicates dropped within the batch. Raises ``StoreError`` when a file cannot be written (nothing of the
        failed group is visible to readers; groups renamed before the failure are, and a retry adds copies that
        the reader drops)."""
        groups: dict[tuple[str, str, str], dict[tuple[Any, ...], tuple[Any, ...]]] = {}
        duplicates = 0
        seen: set[tuple[str, tuple[Any, ...]]] = set()
        for event in events:
            table, row = _row(event)
            ts_i = self._ts_index[table]
            key = tuple(row[i] for i in self._key_index[table])
            group = groups.setdefault((table, event.experiment_id, _date(row[ts_i])), {})
            if (table, key) in seen:  # (the copy may fall under another date: a click sent again a day later)
                duplicates += 1
                continue
            group[key] = row
            seen.add((table, key))
        stored = 0
        try:
            for (table, experiment, day), rows in groups.items():
                self._write_file(table, experiment, day, list(rows.values()))
                stored += len(rows)
        except OSError as exc:
            raise StoreError(f"store {self.url!r}: writing a Parquet file failed ({exc}); the batch is not acked "
                             "and will be redelivered") from exc
        return WriteResult(stored=stored, duplicates=duplicates)

    def close(self) -> None:
        """Nothing is held open between batches."""

    # -- files ----------------------------------------------------------------------------------------------
    def _mkdirs(self, path: Path) -> None:
        """``mkdir -p`` that fsyncs the parent of every directory it creates (so the new name survives a crash)."""
        if path in self._known_dirs:
            return
        missing = []
        p = path
        while not p.is_dir():
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:  # another ingest process made it meanwhile; fsync the parent all the same
                pass
            _fsync_dir(d.parent)
        self._known_dirs.add(path)

    def _write_file(self, table: str, experiment: str, day: str, rows: list[tuple[Any, ...]]) -> Path:
        schema = SCHEMAS[table]
        columns = list(zip(*rows))
        data = pa.table({n: pa.array(col, type=schema.field(n).type) for n, col in zip(schema.names, columns)},
                        schema=schema)
        folder = self.root / table / partition_name(experiment) / f"date={day}"
        self._mkdirs(folder)
        self._files += 1
        name = f"ingest-{time.time_ns():020d}-{self._writer}-{self._files:06d}.parquet"
        tmp = folder / f"{_TMP_PREFIX}{name[len('ingest-'):]}.tmp"
        try:
            with open(tmp, "wb") as fh:
                pq.write_table(data, fh, compression=self.compression)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, folder / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(folder)
        return folder / name

    def __repr__(self) -> str:
        return f"ParquetSink({str(self.root)!r})"
