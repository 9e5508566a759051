"""``analyze --engine spark``: the per-unit aggregation as Spark SQL over a Parquet export.

``SparkParquetStore`` is the read-only Parquet store (``abharness.stores.parquet``) whose ``unit_aggregates`` -- the
per-(unit, arm[, segment]) sufficient statistics every A/B metric, CUPED, power and the time series are built from
-- runs in Spark: the same statement as the database stores (``queries.unit_aggregates_sql``, dialect ``spark``),
over ``spark.read.parquet`` of the exported or ingested files (ingested ones read one row per key, as in DuckDB).
Only those per-unit rows come back to the driver. The other, small reads (experiments, arms, audit log, traffic
counts, interleaving, bot-rule evidence) stay in DuckDB.

Tests and the CLI run Spark in local mode (``local[2]``, UI off, bound to 127.0.0.1); in production pass a
session connected to the cluster (``SparkParquetStore(root, session=spark)``, e.g. on Databricks or EMR).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from abharness.core.events import UnitAggregate
from abharness.errors import StoreError
from abharness.stores import queries
from abharness.stores.parquet import ParquetStore
from abharness.stores.parquet_export import TABLES, files
from abharness.stores.parquet_sink import KEYS

__all__ = ["SparkParquetStore", "local_session"]

_SESSION_LOCK = threading.Lock()


def local_session() -> Any:
    """A local-mode SparkSession for this process (created once, reused), UI off, loopback only."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - pyspark is a dependency
        raise StoreError("--engine spark needs pyspark: pip install pyspark") from exc
    with _SESSION_LOCK:
        return (SparkSession.builder.master("local[2]").appName("abharness")
                .config("spark.ui.enabled", "false").config("spark.driver.bindAddress", "127.0.0.1")
                .config("spark.driver.host", "127.0.0.1").config("spark.sql.shuffle.partitions", "4")
                .config("spark.sql.session.timeZone", "UTC").getOrCreate())


class SparkParquetStore(ParquetStore):
    """A Parquet export whose per-unit aggregation runs as Spark SQL."""

    def __init__(self, root: str | Path, *, url: str | None = None, session: Any = None) -> None:
        super().__init__(root, url=url)
        self.spark = session if session is not None else local_session()
        self._views = f"abh_{id(self):x}_"
        for table in ("impressions", "clicks"):
            paths = [str(p) for p in files(self.root, table)]
            if paths:
                df = self.spark.read.parquet(*paths)
                if self.dedupe[table]:  # ingested files may hold a redelivered copy: one row per key
                    df = self._one_per_key(df, table)
            else:
                df = self.spark.createDataFrame([], self._spark_schema(table))
            df.createOrReplaceTempView(self._views + table)

    @staticmethod
    def _one_per_key(df: Any, table: str) -> Any:
        from pyspark.sql import Window
        from pyspark.sql import functions as F  # noqa: N812 - Spark's own idiom

        # The DuckDB view's rule: the first row of the file whose name sorts first (ingest names files by write time).
        first = Window.partitionBy(*KEYS[table]).orderBy(F.col("_metadata.file_name"), F.col("_metadata.row_index"))
        return df.withColumn("_abh_rn", F.row_number().over(first)).where("_abh_rn = 1").drop("_abh_rn")

    @staticmethod
    def _spark_schema(table: str) -> str:
        from abharness.stores.parquet_export import SCHEMAS

        kinds = {"string": "STRING", "double": "DOUBLE", "int64": "BIGINT"}
        return ", ".join(f"{f.name} {kinds[str(f.type)]}" for f in SCHEMAS[table])

    def _spark_sql(self, sql: str) -> str:
        for table in ("impressions", "clicks"):  # this store's views (several stores may share one session)
            sql = sql.replace(f"FROM {table} ", f"FROM {self._views}{table} ").replace(
                f"JOIN {table} ", f"JOIN {self._views}{table} ").replace(f"FROM {table}\n", f"FROM {self._views}{table}\n")
        return sql

    def unit_aggregates(self, experiment_id: str, *, since: float | None = None, until: float | None = None,
                        segment: str | None = None, modes: Sequence[str] = ("ab",),
                        method: str = "scan") -> Iterator[UnitAggregate]:
        """Per-(unit, arm[, segment]) sums, computed by Spark SQL (the stores' statement, Spark dialect)."""
        if not modes:
            return iter(())
        sql = queries.unit_aggregates_sql("spark", since=since, until=until, segment=segment, n_modes=len(modes))
        params = queries.window_params(experiment_id, since=since, until=until, segment=segment, modes=modes)
        if segment is not None:  # Spark's JSON path takes ['key'], not the quoted ."key" of SQLite
            params["segment_path"] = "$['" + segment.replace("'", "\\'") + "']"
        used = set(queries._PARAM.findall(sql))
        try:
            rows = self.spark.sql(self._spark_sql(sql), args={k: v for k, v in params.items() if k in used}).collect()
        except Exception as exc:  # py4j / analysis errors
            raise StoreError(f"store {self.url!r}: Spark SQL failed: {str(exc).splitlines()[0]}") from exc
        return queries.rows_to_unit_aggregates(tuple(r) for r in rows)

    def close(self) -> None:
        """Drop this store's views (the session stays for reuse) and close DuckDB."""
        for table in TABLES:
            try:
                self.spark.catalog.dropTempView(self._views + table)
            except Exception:  # pragma: no cover - session already stopped
                pass
        super().close()
