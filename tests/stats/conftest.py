"""Fixtures for the statistics tests: a fake EventStore serving UnitAggregate rows, and event generators that
write real impressions/clicks into a SQLite store."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest

from abharness.core.events import Click, Impression, InterleaveUnitAggregate, ShownResult, UnitAggregate


@dataclass
class FakeStore:
    """Satisfies the read side of ``EventStore`` with canned per-unit rows.

    ``rows[(experiment, mode)]`` are UnitAggregate rows; the time window is applied to each row's first_ts
    (good enough for tests: real windowing is tested against SQLite).
    """

    rows: dict[tuple[str, str], list[UnitAggregate]] = field(default_factory=dict)
    interleave: dict[str, list[InterleaveUnitAggregate]] = field(default_factory=dict)
    audit: list = field(default_factory=list)
    url: str = "fake://"

    def audit_log(self, experiment_id: str) -> list:
        return [e for e in self.audit if e.experiment_id == experiment_id]

    def experiments(self) -> list[str]:
        return sorted({e for e, _ in self.rows} | set(self.interleave))

    def arms(self, experiment_id: str) -> list[str]:
        return sorted({r.arm for (e, _), rows in self.rows.items() if e == experiment_id for r in rows})

    def unit_aggregates(self, experiment_id: str, *, since: float | None = None, until: float | None = None,
                        segment: str | None = None, modes: Sequence[str] = ("ab",)) -> Iterator[UnitAggregate]:
        for mode in modes:
            for r in self.rows.get((experiment_id, mode), []):
                if (since is None or r.first_ts >= since) and (until is None or r.first_ts < until):
                    yield r

    def iter_impressions(self, experiment_id: str, *, since: float | None = None, until: float | None = None,
                         batch_size: int = 1000) -> Iterator[tuple[object, list]]:
        # only the existence of rows matters to the analysis (a probe before the pre-period query)
        for (e, _), rows in self.rows.items():
            for r in rows:
                if e == experiment_id and (since is None or r.first_ts >= since) and (until is None or r.first_ts < until):
                    yield (r, [])

    def interleave_aggregates(self, experiment_id: str, *, since: float | None = None,
                              until: float | None = None) -> Iterator[InterleaveUnitAggregate]:
        yield from self.interleave.get(experiment_id, [])

    def close(self) -> None:
        pass


def unit_rows(
    rng: np.random.Generator, n_units: int, *, arms: Sequence[str] = ("control", "treatment"),
    shares: Sequence[float] = (0.5, 0.5), ctr: float = 0.3, lift: dict[str, float] | None = None,
    mean_impressions: float = 4.0, concentration: float = 4.0, latency_ms: float = 100.0,
    latency_factor: dict[str, float] | None = None, error_rate: dict[str, float] | None = None,
    prefix: str = "u", t0: float = 1_000_000.0, span_s: float = 7 * 86_400.0,
) -> list[UnitAggregate]:
    """Per-unit aggregates for repeated users with heterogeneous click propensity p_i ~ Beta (ICC > 0)."""
    lift = lift or {}
    latency_factor = latency_factor or {}
    error_rate = error_rate or {}
    arm_idx = rng.choice(len(arms), size=n_units, p=np.asarray(shares) / np.sum(shares))
    imps = 1 + rng.poisson(mean_impressions - 1, n_units)
    p = rng.beta(ctr * concentration, (1 - ctr) * concentration, n_units)
    rows = []
    for i in range(n_units):
        arm = arms[arm_idx[i]]
        pi = min(1.0, p[i] * (1 + lift.get(arm, 0.0)))
        n = int(imps[i])
        clicked = int(rng.binomial(n, pi))
        extra = int(rng.poisson(0.3 * clicked))
        rr = float(sum(1.0 / rng.integers(1, 11) for _ in range(clicked)))
        lat = rng.gamma(4.0, latency_ms * latency_factor.get(arm, 1.0) / 4.0, n)
        errs = int(rng.binomial(n, error_rate.get(arm, 0.0)))
        rows.append(UnitAggregate(
            unit_id=f"{prefix}{i}", arm=arm, impressions=n, clicks=clicked + extra, sum_reciprocal_rank=rr,
            successes=clicked, sum_time_to_first_click=float(rng.gamma(2.0, 3.0, clicked).sum()),
            clicked_impressions=clicked, sum_latency_ms=float(lat.sum()), sum_latency_ms_sq=float((lat**2).sum()),
            errors=errs, fallbacks=0, first_ts=t0 + float(rng.uniform(0, span_s)),
        ))
    return rows


def write_events(store, rng: np.random.Generator, n_units: int, *, experiment: str = "exp",
                 arms: Sequence[str] = ("control", "treatment"), ctr: dict[str, float] | None = None,
                 mean_impressions: float = 3.0, t0: float = 1_000_000.0, span_s: float = 86_400.0,
                 mode: str = "ab", devices: Sequence[str] = ("mobile", "desktop"), prefix: str = "u") -> int:
    """Write impressions and clicks for ``n_units`` units into a real store; returns impressions written."""
    ctr = ctr or {a: 0.3 for a in arms}
    shown = tuple(ShownResult(f"d{j}", j, 1.0 / j) for j in range(1, 11))
    events: list = []
    count = 0
    for i in range(n_units):
        arm = arms[int(rng.integers(len(arms)))]
        first = t0 + float(rng.uniform(0, span_s))
        for j in range(1 + int(rng.poisson(mean_impressions - 1))):
            iid = f"{experiment}-{mode}-{prefix}{i}-{j}"
            ts = first + 60.0 * j
            events.append(Impression(iid, experiment, ts, f"{prefix}{i}", arm, mode, "q", 10, shown,
                                     latency_ms=float(rng.gamma(4.0, 25.0)), context={"device": devices[i % len(devices)]}))
            count += 1
            if rng.random() < ctr[arm]:
                pos = int(rng.integers(1, 11))
                events.append(Click(iid, experiment, f"{prefix}{i}", arm, ts + float(rng.gamma(2.0, 2.0)),
                                    f"d{pos}", pos))
        if len(events) > 5000:
            store.write_batch(events)
            events = []
    if events:
        store.write_batch(events)
    return count


@pytest.fixture
def sqlite_store(tmp_path):
    from abharness.stores import open_store

    store = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    yield store
    store.close()


@pytest.fixture
def sim():
    """The helpers above (``--import-mode=importlib`` means test modules cannot import conftest directly)."""
    from types import SimpleNamespace

    return SimpleNamespace(FakeStore=FakeStore, unit_rows=unit_rows, write_events=write_events)
