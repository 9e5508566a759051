"""Parquet export read through DuckDB: every read the analysis and replay make equals the database store's, to
1e-9, for SQLite and PostgreSQL (the same aggregation SQL, run by DuckDB over the exported files)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from abharness.analysis import AnalysisOptions, PrePeriod, analyze
from abharness.analysis.exclusions import ExclusionRules
from abharness.core.events import AuditEntry, Feedback, Impression
from abharness.errors import ConfigError, StoreError
from abharness.stores import open_store
from abharness.stores.base import EventStore
from abharness.stores.parquet_export import export_experiment, partition_name
from tests.stores.test_rollup import DAY, EXP, T0, as_tuples, close_enough, random_events, windows


def fill(store: EventStore) -> None:
    rng = random.Random(11)
    for batch in random_events(5, n_imps=900):
        store.write_batch(batch)
    store.write_batch([Impression(f"pre-{i}", EXP, T0 - 3 * DAY + i, f"u{rng.randrange(40)}", "baseline", "shadow",
                                  "q", 5, (), latency_ms=10.0, context={"device": rng.choice(["m", "d", True])})
                       for i in range(80)])
    store.write_batch([AuditEntry(T0 - 4 * DAY, EXP, "alice", "start", {"weights": [50, 50]}),
                       Feedback(f"i5-{3}", EXP, "u1", "baseline", T0 + 5, "seen", "d1", 1, None),
                       Impression("other-1", "other-exp", T0, "u1", "baseline", "ab", "q", 3, ())])


@pytest.fixture()
def pair(store: EventStore, tmp_path: Path):
    fill(store)
    rows = export_experiment(store, EXP, tmp_path / "pq")
    assert rows["impressions"] == store.counts(EXP)["impressions"]
    assert rows["clicks"] == store.counts(EXP)["clicks"] + 1  # + the stray click of another experiment on i5-0
    pq_store = open_store(f"parquet:///{tmp_path / 'pq'}")
    try:
        yield store, pq_store
    finally:
        pq_store.close()


def test_every_read_equals_the_database_store(pair) -> None:
    db, pq = pair
    assert pq.experiments() == [EXP]  # the export holds the one experiment
    assert_reads_equal(db, pq)
    assert len(pq.audit_log(EXP)) == len(pq.feedback(EXP)) == 1


def assert_reads_equal(db: EventStore, pq: EventStore) -> None:
    """Every read of EXP the analysis and replay make, equal to 1e-9 (also used for ingested Parquet)."""
    assert pq.arms(EXP) == db.arms(EXP)
    assert pq.counts(EXP) == db.counts(EXP)
    for since, until in windows():
        for modes in (("ab",), ("ab", "shadow"), ("interleave",)):
            want = as_tuples(db.unit_aggregates(EXP, since=since, until=until, modes=modes, method="scan"))
            assert want or since is not None and since > T0 + 5 * DAY
            close_enough(as_tuples(pq.unit_aggregates(EXP, since=since, until=until, modes=modes)), want,
                         f"window {since, until} modes {modes}")
            assert pq.has_impressions(EXP, since=since, until=until, modes=modes) == bool(want)
        close_enough(list(pq.interleave_aggregates(EXP, since=since, until=until)),
                     list(db.interleave_aggregates(EXP, since=since, until=until)))
        for bucket in (86_400.0, 3_600.0):
            close_enough(pq.traffic_counts(EXP, since=since, until=until, bucket_s=bucket, modes=("ab", "shadow")),
                         db.traffic_counts(EXP, since=since, until=until, bucket_s=bucket, modes=("ab", "shadow")))
        close_enough(pq.unit_activity(EXP, since=since, until=until, fast_click_s=2.0),
                     db.unit_activity(EXP, since=since, until=until, fast_click_s=2.0))
        spans = [(json.loads(f) if isinstance(f, str) else f, a, b, n)
                 for f, a, b, n in db.fingerprint_spans(EXP, since=since, until=until)]
        close_enough([(json.loads(f), a, b, n) for f, a, b, n in pq.fingerprint_spans(EXP, since=since, until=until)],
                     spans)
    def by_segment(rows):  # where NULL sorts is the dialect's choice (SQLite first, PostgreSQL/DuckDB last)
        return sorted(as_tuples(rows), key=lambda r: (r[0], r[1], str(r[2])))

    seg = by_segment(db.unit_aggregates(EXP, segment="device", modes=("shadow",), method="scan"))
    assert {r[2] for r in seg} == {"m", "d", "true", None}
    close_enough(by_segment(pq.unit_aggregates(EXP, segment="device", modes=("shadow",))), seg)
    assert list(pq.iter_impressions(EXP, batch_size=37)) == list(db.iter_impressions(EXP, batch_size=1000))
    assert pq.audit_log(EXP) == db.audit_log(EXP)
    assert pq.feedback(EXP) == db.feedback(EXP)
    assert pq.get_impression("i5-3") == db.get_impression("i5-3")


@pytest.mark.parametrize("window,bots", [((None, None), False), ((T0 + 0.6 * DAY, T0 + 3.1 * DAY), True)])
def test_analyze_over_parquet_equals_the_database_store(pair, window, bots: bool) -> None:
    db, pq = pair
    since, until = window
    base: dict = dict(control="baseline", bootstrap_samples=50, timeseries_points=6, tuning_units=100)
    if bots:
        base["exclusions"] = ExclusionRules(max_searches_per_day=6)
    if since is not None:
        base["pre_period"] = PrePeriod(until=since)
    want = analyze(db, EXP, since=since, until=until, options=AnalysisOptions(**base)).to_dict()  # rollup path
    got = analyze(pq, EXP, since=since, until=until, options=AnalysisOptions(**base)).to_dict()
    for report in (want, got):
        report.pop("store", None)
    assert got["metrics"] and len(got["timeseries"]) >= 3
    close_enough(got, want)


def test_re_export_replaces_the_experiment_and_keeps_others(store: EventStore, tmp_path: Path) -> None:
    fill(store)
    out = tmp_path / "pq"
    first = export_experiment(store, EXP, out)
    export_experiment(store, "other-exp", out)
    again = export_experiment(store, EXP, out)
    assert first == again
    pq = open_store(f"parquet:///{out}")
    try:
        assert pq.experiments() == [EXP, "other-exp"]
        assert pq.counts(EXP) == store.counts(EXP)
        assert pq.counts("other-exp")["impressions"] == 1
        with pytest.raises(StoreError, match="read-only"):
            pq.write_batch([])
    finally:
        pq.close()
    assert (out / "impressions" / partition_name(EXP)).is_dir()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_bad_parquet_urls_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="names no directory"):
        open_store("parquet:///")
    with pytest.raises(StoreError, match="no directory"):
        open_store(f"parquet:///{tmp_path / 'missing'}")
    with pytest.raises(StoreError, match="abharness export"):
        open_store(f"parquet:///{tmp_path}")
