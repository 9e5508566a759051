"""``export``: an experiment's events from any store into Parquet files, partitioned by experiment and UTC date.

Layout (one directory per table, Hive-style partitions; every file keeps all columns, so a reader needs no
partition columns)::

    DIR/impressions/experiment=<id>/date=YYYY-MM-DD/part-00000.parquet
    DIR/clicks/experiment=<id>/date=YYYY-MM-DD/part-00000.parquet      (date of the click)
    DIR/feedback/experiment=<id>/date=YYYY-MM-DD/part-00000.parquet    (when the store keeps feedback)
    DIR/audit/experiment=<id>/date=YYYY-MM-DD/part-00000.parquet

The columns are the stores' own (``abharness.stores.codec``; JSON columns stay JSON text), so the aggregation
SQL of ``abharness.stores.queries`` runs unchanged over them (``abharness.stores.parquet.ParquetStore``).
Exporting an experiment again replaces its partitions atomically per table (written aside, then renamed), so a
re-export never leaves duplicates and other experiments in the directory are untouched.
"""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq

from abharness.stores import codec
from abharness.stores.base import EventStore

__all__ = ["SCHEMAS", "TABLES", "export_experiment", "partition_name"]

_S, _F, _I = pa.string(), pa.float64(), pa.int64()
_TYPES = {"ts": _F, "k": _I, "latency_ms": _F, "fallback": _I, "has_error": _I, "position": _I, "dwell_ms": _F,
          "value": _F}
SCHEMAS: dict[str, pa.Schema] = {
    table: pa.schema([(c, _TYPES.get(c, _S)) for c in columns])
    for table, columns in (("impressions", codec.IMPRESSION_COLUMNS), ("clicks", codec.CLICK_COLUMNS),
                           ("feedback", codec.FEEDBACK_COLUMNS), ("audit", codec.AUDIT_COLUMNS))
}
TABLES: tuple[str, ...] = tuple(SCHEMAS)
_FLUSH_ROWS = 200_000


def partition_name(experiment_id: str) -> str:
    """The ``experiment=...`` directory of an experiment (percent-encoded, so any id is one safe path part)."""
    return "experiment=" + quote(experiment_id, safe="")


def _date(ts: float) -> str:
    return dt.datetime.fromtimestamp(float(ts), tz=dt.timezone.utc).strftime("%Y-%m-%d")


class _TableWriter:
    """Rows of one table buffered per date and written as numbered part files under ``root``."""

    def __init__(self, root: Path, schema: pa.Schema) -> None:
        self.root, self.schema = root, schema
        self.buffers: dict[str, list[tuple[Any, ...]]] = {}
        self.parts: dict[str, int] = {}
        self.buffered = 0
        self.rows = 0

    def add(self, row: tuple[Any, ...], ts: float) -> None:
        self.buffers.setdefault(_date(ts), []).append(row)
        self.buffered += 1
        self.rows += 1
        if self.buffered >= _FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        names = self.schema.names
        for day, rows in self.buffers.items():
            if not rows:
                continue
            columns = list(zip(*rows))
            table = pa.table({n: pa.array(col, type=self.schema.field(n).type) for n, col in zip(names, columns)},
                             schema=self.schema)
            part = self.parts.get(day, 0)
            self.parts[day] = part + 1
            path = self.root / f"date={day}" / f"part-{part:05d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path, compression="zstd")
        self.buffers, self.buffered = {}, 0


def _replace(staged: Path, final: Path) -> None:
    """Swap the staged partition in for the old one (rename: readers see the old or the new, not a mix)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    old = final.with_name(final.name + f".old-{uuid.uuid4().hex[:8]}")
    if final.exists():
        final.rename(old)
    if staged.exists():
        staged.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def export_experiment(
    store: EventStore, experiment_id: str, out_dir: str | Path, *, since: float | None = None,
    until: float | None = None, batch_size: int = 5000, progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Write the experiment's impressions (since <= ts < until) with their clicks, its feedback and audit log as
    Parquet under ``out_dir``; returns rows written per table. ``progress(n)`` is called after each batch of
    ``n`` impressions."""
    out = Path(out_dir)
    stage = out / f".export-{uuid.uuid4().hex[:12]}"
    part = partition_name(experiment_id)
    writers = {t: _TableWriter(stage / t / part, SCHEMAS[t]) for t in TABLES}
    try:
        kept: set[str] = set()
        done = 0
        for imp, clicks in store.iter_impressions(experiment_id, since=since, until=until, batch_size=batch_size):
            writers["impressions"].add(codec.impression_row(imp), imp.ts)
            kept.add(imp.impression_id)
            for c in clicks:  # every click the store links to the impression (as its replay sees them)
                writers["clicks"].add(codec.click_row(c), c.ts)
            done += 1
            if progress is not None and done % batch_size == 0:
                progress(batch_size)
        if progress is not None and done % batch_size:
            progress(done % batch_size)
        for fb in _feedback(store, experiment_id):
            if fb.impression_id in kept:
                writers["feedback"].add(codec.feedback_row(fb), fb.ts)
        for entry in store.audit_log(experiment_id):
            writers["audit"].add(codec.audit_row(entry), entry.ts)
        for w in writers.values():
            w.flush()
        for t in TABLES:
            _replace(stage / t / part, out / t / part)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return {t: w.rows for t, w in writers.items()}


def _feedback(store: EventStore, experiment_id: str) -> Iterable[Any]:
    fetch = getattr(store, "feedback", None)
    return fetch(experiment_id) if callable(fetch) else ()


def files(root: str | Path, table: str) -> Sequence[Path]:
    """The Parquet files of ``table`` under ``root`` (all experiments and dates)."""
    return sorted((Path(root) / table).glob("experiment=*/date=*/*.parquet"))
