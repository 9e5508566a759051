"""Fixtures of the results pages: two seeded SQLite stores written without a proxy (one whose split is fine, one
with a planted sample ratio mismatch), each analysed once; helpers are exposed on ``results`` (test modules
cannot import conftest under importlib mode)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from abharness.analysis import AnalysisOptions, analyze
from abharness.stores import open_store
from abharness.testing.experiments import write_experiment

OPTIONS = AnalysisOptions(bootstrap_samples=0, timeseries_points=6)


@pytest.fixture(scope="session")
def stores(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """``ok``: a 5-day A/B where the treatment wins plus an interleaved phase; ``srm``: a 56/44 split logged
    against a 50/50 allocation, no effect. One SQLite file each."""
    root = tmp_path_factory.mktemp("results-stores")
    urls = {}
    for name, kw in {"ok": {"units": 2_400, "interleave_units": 600, "seed": 1},
                     "srm": {"units": 2_400, "treatment_share": 0.56, "ctr": (0.3, 0.3), "seed": 2}}.items():
        url = f"sqlite:///{root / f'{name}.db'}"
        st = open_store(url)
        try:
            write_experiment(st, f"exp-{name}", days=5, **kw)
        finally:
            st.close()
        urls[name] = url
    return SimpleNamespace(ok=urls["ok"], srm=urls["srm"], root=root)


@pytest.fixture(scope="session")
def reports(stores: SimpleNamespace) -> SimpleNamespace:
    out = {}
    for name in ("ok", "srm"):
        st = open_store(getattr(stores, name), migrate=False)
        try:
            out[name] = analyze(st, f"exp-{name}", segment="device", options=OPTIONS)
        finally:
            st.close()
    return SimpleNamespace(**out)


@pytest.fixture
def artifacts_dir(tmp_path: Path) -> Path:
    """Where screenshots go: $ABHARNESS_ARTIFACTS/<test> when set (CI keeps them), else the test's tmp dir."""
    import os

    base = os.environ.get("ABHARNESS_ARTIFACTS")
    return Path(base) if base else tmp_path


@pytest.fixture
def exclusion_summary() -> dict:
    """The JSON form of ``abharness.analysis.exclusions.ExclusionSummary`` (bot and outlier filters' effect)."""
    return {
        "rules": {"max_searches_per_day": 200, "min_click_delay_ms": None, "crawler_user_agents": True,
                  "winsorize_percentile": None},
        "effects": [{"rule": "crawler_user_agents", "units": {"baseline": 12, "finetuned": 9},
                     "impressions": {"baseline": 340.0, "finetuned": 250.0},
                     "clicks": {"baseline": 0.0, "finetuned": 1.0}},
                    {"rule": "max_searches_per_day", "units": {"baseline": 3, "finetuned": 1},
                     "impressions": {"baseline": 2_100.0, "finetuned": 900.0},
                     "clicks": {"baseline": 5.0, "finetuned": 2.0}}],
        "units_before": {"baseline": 1_521, "finetuned": 1_504},
        "units_after": {"baseline": 1_506, "finetuned": 1_494},
        "srm_before": {"p_value": 0.74, "alarm": False},
    }
