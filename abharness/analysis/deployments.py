"""Redeploys inside the analysis window: an arm whose model or index changed mid-experiment mixes two treatments.

Every impression records the fingerprints (model, index) of each arm whose ranking it computed. The store groups
the window's impressions by that record (``fingerprint_spans``, a handful of rows); an arm seen with more than one
(model, index) in the window changed deployment inside it. Like an allocation change for the SRM check, the
analysis then names the change and its time, refuses a verdict across it, and gives the ``--since`` that
analyses one deployment only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["DeploymentChange", "deployment_changes", "describe_changes"]


@dataclass(frozen=True, slots=True)
class DeploymentChange:
    """Arm ``arm`` served ``before`` until ``last_before`` and ``after`` from ``at`` (unix seconds)."""

    arm: str
    before: tuple[str, str]
    after: tuple[str, str]
    last_before: float
    at: float


def deployment_changes(
    store: Any, experiment_id: str, *, since: float | None, until: float | None
) -> list[DeploymentChange]:
    """Changes of an arm's (model, index) inside the window, oldest first. Stores without ``fingerprint_spans``
    (test fakes) give none."""
    spans = getattr(store, "fingerprint_spans", None)
    if spans is None:
        return []
    per_arm: dict[str, dict[tuple[str, str], list[float]]] = {}
    for raw, first, last, _n in spans(experiment_id, since=since, until=until):
        try:
            fps = json.loads(raw) if isinstance(raw, str) else dict(raw or {})
        except ValueError:
            continue
        if not isinstance(fps, dict):
            continue
        for arm, fp in fps.items():
            if not isinstance(fp, dict):
                continue
            key = (str(fp.get("model", "")), str(fp.get("index", "")))
            seen = per_arm.setdefault(str(arm), {}).setdefault(key, [first, last])
            seen[0], seen[1] = min(seen[0], first), max(seen[1], last)
    changes = []
    for arm, deployments in sorted(per_arm.items()):
        ordered = sorted(deployments.items(), key=lambda kv: kv[1][0])
        for (prev, (_, prev_last)), (cur, (cur_first, _)) in zip(ordered, ordered[1:]):
            changes.append(DeploymentChange(arm, prev, cur, prev_last, cur_first))
    return sorted(changes, key=lambda c: c.at)


def _short(fp: tuple[str, str]) -> str:
    return f"model {fp[0][:16]}, index {fp[1][:16]}"


def describe_changes(changes: list[DeploymentChange]) -> str:
    """One message naming every change, its time, and the ``--since`` that analyses the latest deployment."""
    parts = [
        f"arm {c.arm!r} changed from {_short(c.before)} to {_short(c.after)} at "
        f"{datetime.fromtimestamp(c.at, UTC).isoformat(timespec='seconds')}"
        for c in changes[:5]
    ]
    latest = max(changes, key=lambda c: c.at)
    return (
        "the served model or index changed inside the window (" + "; ".join(parts) + "): the numbers would mix two "
        "treatments, so no verdict is given across the change; analyse one deployment, e.g. "
        f"--since {_since(latest)} (or --until {_since(changes[0])} for the deployment before)"
    )


def _since(change: DeploymentChange) -> str:
    """A bound between the old deployment's last impression and the new one's first (whole seconds if possible)."""
    whole = math.floor(change.at)
    if whole > change.last_before:
        return str(whole)
    return f"{math.floor(change.at * 1000) / 1000:.3f}"
