"""A seeded, realistic-looking experiment log written straight into a store (no proxy): A/B impressions and clicks
spread over several days with a device context, optionally an interleaved phase with team-credited clicks, and the
audit entries a proxy would have written (start, a ramp, a pause). For tests and demos of the results pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from abharness.core.events import AuditEntry, Click, Impression, ShownResult

__all__ = ["ExperimentLog", "write_experiment"]

DAY_S = 86_400.0


@dataclass(frozen=True)
class ExperimentLog:
    """What ``write_experiment`` wrote."""

    experiment_id: str
    units: dict[str, int]
    impressions: int
    interleaved: int
    t0: float
    days: int


def write_experiment(
    store, experiment_id: str, *, units: int = 3_000, days: int = 5, arms: Sequence[str] = ("baseline", "finetuned"),
    ctr: Sequence[float] = (0.30, 0.34), treatment_share: float = 0.5, planned_share: float = 0.5,
    interleave_units: int = 0, seed: int = 0, t0: float = 1_780_000_000.0, mean_impressions: float = 3.0,
    devices: Sequence[str] = ("desktop", "mobile"),
) -> ExperimentLog:
    """Write the log. Units are assigned to the treatment with probability ``treatment_share`` while the audit log
    says ``planned_share``: make them differ to plant a sample ratio mismatch. Returns counts."""
    rng = np.random.default_rng(seed)
    control, treatment = arms
    shown = tuple(ShownResult(f"d{j}", j, 1.0 / j) for j in range(1, 11))
    weights = {control: 1.0 - planned_share, treatment: planned_share}
    events: list = [AuditEntry(t0 - 60.0, experiment_id, "abharness serve", "serve_start",
                               {"config_weights": weights, "effective_weights": weights, "mode": "ab"})]
    per_arm = {control: 0, treatment: 0}
    count = 0

    def flush() -> None:
        nonlocal events
        if events:
            store.write_batch(events)
            events = []

    for i in range(units):
        is_t = rng.random() < treatment_share
        arm = treatment if is_t else control
        per_arm[arm] += 1
        p_click = ctr[1] if is_t else ctr[0]
        first = t0 + float(rng.uniform(0, days * DAY_S * 0.999))
        uid = f"u{i}"
        for j in range(1 + int(rng.poisson(mean_impressions - 1))):
            ts = min(first + 600.0 * j, t0 + days * DAY_S - 1)
            iid = f"{experiment_id}-ab-{i}-{j}"
            events.append(Impression(iid, experiment_id, ts, uid, arm, "ab", f"query {j % 7}", 10, shown,
                                     latency_ms=float(rng.gamma(4.0, 20.0 if is_t else 21.0)),
                                     context={"device": devices[i % len(devices)]}))
            count += 1
            if rng.random() < p_click:
                pos = int(min(rng.geometric(0.35 if is_t else 0.3), 10))
                events.append(Click(iid, experiment_id, uid, arm, ts + float(rng.gamma(2.0, 2.0)), f"d{pos}", pos))
        if len(events) > 5_000:
            flush()
    inter = 0
    for i in range(interleave_units):
        uid = f"il{i}"
        first = t0 + float(rng.uniform(0, days * DAY_S * 0.999))
        for j in range(1 + int(rng.poisson(mean_impressions - 1))):
            ts = first + 600.0 * j
            iid = f"{experiment_id}-il-{i}-{j}"
            teams = tuple(ShownResult(f"d{k}", k, 1.0 / k, treatment if k % 2 else control) for k in range(1, 11))
            events.append(Impression(iid, experiment_id, ts, uid, "interleaved", "interleave", "q", 10, teams))
            inter += 1
            if rng.random() < 0.4:
                pos = int(min(rng.geometric(0.3), 10))
                team = teams[pos - 1].team
                if team == control and rng.random() < 0.15:  # the treatment's results win a little more often
                    pos = pos + 1 if pos < 10 else pos - 1
                    team = teams[pos - 1].team
                events.append(Click(iid, experiment_id, uid, "interleaved", ts + 3.0, f"d{pos}", pos, team=team))
        if len(events) > 5_000:
            flush()
    events += [
        AuditEntry(t0 + days * DAY_S + 10, experiment_id, "alice", "pause", {}),
        AuditEntry(t0 + days * DAY_S + 20, experiment_id, "alice", "resume", {}),
        AuditEntry(t0 + days * DAY_S + 30, experiment_id, "alice", "allocation", {"weights": weights}),
    ]
    flush()
    return ExperimentLog(experiment_id, per_arm, count, inter, t0, days)
