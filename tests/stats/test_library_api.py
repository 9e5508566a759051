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
