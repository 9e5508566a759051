"""``analyze --engine spark``: the per-unit aggregation as Spark SQL (local mode, one session for the module) over
the Parquet export gives the SQLite store's sufficient statistics and report to 1e-9."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from abharness.analysis import AnalysisOptions, analyze
from abharness.cli.main import build_app
from abharness.stores import open_store
from abharness.stores.parquet_export import export_experiment
from tests.stores.test_parquet import fill
from tests.stores.test_rollup import EXP, as_tuples, close_enough, windows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("spark")
    db = open_store(f"sqlite:///{root / 'events.db'}")
    fill(db)
    export_experiment(db, EXP, root / "pq")
    db.close()
    return f"sqlite:///{root / 'events.db'}", root / "pq"


def test_spark_unit_aggregates_and_report_equal_the_sqlite_store(exported) -> None:
    from abharness.stores.spark import SparkParquetStore

    url, out = exported
    db, sp, duck = open_store(url), SparkParquetStore(out), open_store(f"parquet:///{out}")
    try:
        for since, until in windows()[:4]:
            for modes in (("ab",), ("ab", "shadow")):
                close_enough(as_tuples(sp.unit_aggregates(EXP, since=since, until=until, modes=modes)),
                             as_tuples(db.unit_aggregates(EXP, since=since, until=until, modes=modes, method="scan")))
        seg = sorted(as_tuples(db.unit_aggregates(EXP, segment="device", modes=("shadow",), method="scan")),
                     key=lambda r: (r[0], r[1], str(r[2])))
        close_enough(sorted(as_tuples(sp.unit_aggregates(EXP, segment="device", modes=("shadow",))),
                            key=lambda r: (r[0], r[1], str(r[2]))), seg)
        opts = AnalysisOptions(control="baseline", bootstrap_samples=50, timeseries_points=4, tuning_units=100)
        reports = [analyze(s, EXP, options=opts).to_dict() for s in (db, duck, sp)]
        for r in reports:
            r.pop("store", None)
        close_enough(reports[2], reports[0])
        close_enough(reports[1], reports[0])
        for name in ("ctr", "mrr"):
            print(name, [(r["metrics"][name]["control"]["value"], r["metrics"][name]["treatment"]["value"])
                         for r in reports if name in r["metrics"]])
    finally:
        sp.close()
        db.close()
        duck.close()


def test_analyze_engine_spark_cli(exported) -> None:
    url, out = exported
    app = build_app()
    runs = [CliRunner().invoke(app, ["analyze", "--store", s, "--experiment", EXP, "--control", "baseline",
                                     "--json", "--bootstrap", "20", *extra])
            for s, extra in ((url, []), (f"parquet:///{out}", ["--engine", "spark"]))]
    assert runs[0].exit_code == runs[1].exit_code
    close_enough(json.loads(runs[1].stdout)["metrics"], json.loads(runs[0].stdout)["metrics"])
    bad = CliRunner().invoke(app, ["analyze", "--store", url, "--experiment", EXP, "--engine", "spark"])
    assert bad.exit_code == 2 and "abharness export" in bad.output


def test_spark_reads_ingested_parquet_once_per_key(tmp_path: Path) -> None:
    """``abharness ingest --to parquet://`` files with redelivered copies: Spark keeps one row per key, as DuckDB."""
    from abharness.stores.parquet_sink import ParquetSink
    from abharness.stores.spark import SparkParquetStore
    from tests.stores.test_rollup import random_events

    db = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    sink = ParquetSink(tmp_path / "pq")
    sink.migrate()
    batches = random_events(9, n_imps=300)
    fetches = [[e for b in batches[i:i + 10] for e in b] for i in range(0, len(batches), 10)]
    for batch in batches:
        db.write_batch(batch)
    for i, fetch in enumerate(fetches):
        sink.write_batch(fetch)
        if i % 2 == 0:  # redelivered after the files were renamed, before the ack
            sink.write_batch(fetch + fetches[(i + 1) % len(fetches)])
    sp = SparkParquetStore(tmp_path / "pq")
    try:
        assert all(sp.dedupe[t] for t in ("impressions", "clicks"))
        since, until = windows()[3]  # one window cutting days (each Spark query takes tens of seconds here)
        modes = ("ab", "shadow")
        close_enough(as_tuples(sp.unit_aggregates(EXP, since=since, until=until, modes=modes)),
                     as_tuples(db.unit_aggregates(EXP, since=since, until=until, modes=modes, method="scan")))
    finally:
        sp.close()
        db.close()
