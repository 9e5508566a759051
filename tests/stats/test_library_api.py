"""``import abharness``: the notebook calls (open_store without accidental creation, analyze, to_frame)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import abharness
from abharness.errors import StoreError


@pytest.fixture
def events_db(tmp_path: Path, sim) -> Path:
    store = abharness.open_store(tmp_path / "events.db", create=True)
    sim.write_events(store, np.random.default_rng(1), 400, experiment="win", ctr={"control": 0.15, "treatment": 0.6})
    store.close()
    return tmp_path / "events.db"


def test_open_store_refuses_a_missing_file_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    with pytest.raises(StoreError, match=r"no SQLite file at .*typo\.db.*create=True"):
        abharness.open_store(missing)
    with pytest.raises(StoreError, match="typo.db"):
        abharness.open_store(f"sqlite:///{missing}")
    assert not missing.exists()


def test_open_store_does_not_migrate_an_existing_database(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    sqlite3.connect(path).close()  # an empty SQLite file: no abharness schema
    before = path.read_bytes()
    store = abharness.open_store(path)
    store.close()
    assert path.read_bytes() == before  # nothing was created or migrated


def test_open_store_create_makes_a_migrated_store(tmp_path: Path) -> None:
    store = abharness.open_store(tmp_path / "new.db", create=True)
    try:
        assert store.experiments() == []
    finally:
        store.close()


def test_analyze_from_a_path_and_to_frame(events_db: Path) -> None:
    report = abharness.analyze(events_db, "win", bootstrap_samples=0, timeseries_points=0, tuning_units=1000,
                              weights={"control": 0.5, "treatment": 0.5}, margins={"error_rate": 0.02})
    assert report.decision == "ship", report.reasons
    frame = report.to_frame()
    assert isinstance(frame, pd.DataFrame)
    ctr = frame[(frame.metric == "ctr") & ~frame.guardrail].iloc[0]
    assert ctr.treatment == "treatment" and ctr.treatment_value > ctr.control_value
    assert ctr.lift == pytest.approx(report.metrics["ctr"].lift)
    assert frame.guardrail.any()  # guardrail rows are there too, flagged


def test_analyze_accepts_an_open_store_and_leaves_it_open(events_db: Path) -> None:
    store = abharness.open_store(events_db)
    try:
        abharness.analyze(store, "win", bootstrap_samples=0, timeseries_points=0)
        assert "win" in store.experiments()  # still usable: the caller owns it
    finally:
        store.close()


def test_analyze_names_an_unknown_option() -> None:
    with pytest.raises(abharness.AbharnessError, match="bootstrap_sample.*AnalysisOptions"):
        abharness.analyze("sqlite:///:memory:", "x", bootstrap_sample=0)


def test_a_ten_second_test_says_days_needed_is_unknown_and_prints_no_unix_times(tmp_path: Path, sim) -> None:
    """analyze on 10 s of data: no 'days still needed 0.0' extrapolated from seconds, dates a person reads."""
    import io
    import re

    from rich.console import Console

    from abharness.analysis.render import render_report

    store = abharness.open_store(tmp_path / "short.db", create=True)
    sim.write_events(store, np.random.default_rng(4), 60, experiment="short", t0=1_767_225_600.0, span_s=10.0,
                     ctr={"control": 0.3, "treatment": 0.32})
    report = abharness.analyze(store, "short", bootstrap_samples=0, timeseries_points=3,
                               since=1_767_225_600.0, until=1_767_229_200.0)
    store.close()
    ctr = next(p for p in report.power if p.metric == "ctr")
    assert ctr.observed_days < 1 and np.isnan(ctr.units_per_day)
    assert ctr.required_units > ctr.current_units and np.isnan(ctr.days_still_needed)
    assert ctr.days_text == "n/a: less than a day of data"
    out = io.StringIO()
    render_report(report, Console(file=out, width=200))
    text = out.getvalue()
    assert "n/a: less than a day of data" in text and "days still needed" in text
    assert "2026-01-01 00:00" in text and "window 2026-01-01T00:00:00Z to 2026-01-01T01:00:00Z" in text
    assert "data span 10 s" in text or "data span 9 s" in text
    assert not re.search(r"\b1\d{9}(\.\d+)?\b", text), "a raw unix timestamp was printed"


def test_days_text_covers_enough_never_and_a_number() -> None:
    from abharness.analysis.report import PowerSummary, duration_text

    base = dict(metric="ctr", treatment="t", sigma2_unit=1.0, target_relative_mde=0.02, target_absolute_mde=0.01,
                power=0.8, current_units=10, required_units=100.0, power_now=0.1, mde_absolute=0.1,
                mde_relative=0.2, units_per_day=10.0, design_effect=None)
    assert PowerSummary(**base, days_still_needed=9.0, observed_days=3.0).days_text == "9.0"
    assert PowerSummary(**base, days_still_needed=float("inf"), observed_days=3.0).days_text.startswith("never")
    assert PowerSummary(**base, days_still_needed=0.0, observed_days=0.5).days_text == \
        "0 (enough units); only 12.0 h of data"
    assert [duration_text(s) for s in (10, 300, 7200, 3 * 86_400)] == ["10 s", "5.0 min", "2.0 h", "3.0 days"]
