"""Which backends replay an experiment of a layered file with (issue 16; docs/replay.md).

Replay re-runs the logged queries through the two arms' *backends*. In a layered file only the main layer chooses the
backend: the top-level experiment's arms are backends themselves, and an experiment added to the main layer names,
per arm, the top-level arm whose backend serves it (``params.backend``). An experiment of another layer (``k``, ...)
or the holdout pseudo-experiment changes no backend, so replay has nothing to re-rank and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from abharness.analysis.layered import arms_view
from abharness.config_layers import MAIN_LAYER
from abharness.errors import ConfigError

__all__ = ["ReplayArms", "replay_arms"]


@dataclass(frozen=True, slots=True)
class ReplayArms:
    """Control and treatment arm of the experiment, and the top-level arm (backend) that serves each."""

    control: str
    treatment: str
    backend_of: dict[str, str]


def replay_arms(config: Any, experiment_id: str, audit: Callable[[], Sequence[Any]] | None = None) -> ReplayArms:
    """The arms replay compares for ``experiment_id`` of ``config`` (any file; a single-experiment file as before).

    Raises ``ConfigError`` for an experiment that does not choose the backend, naming what it changes and the fix.
    """
    view = arms_view(config, experiment_id, audit)
    if view is None or (view.layer == MAIN_LAYER and experiment_id == config.experiment_id):
        return ReplayArms(config.control, config.treatments[0], {a.name: a.name for a in config.arms})
    if view.holdout:
        raise ConfigError(f"experiment {experiment_id!r} is the holdout (held-out units against everyone else), not "
                          "two backends: replay has nothing to re-rank; analyse it with `abharness analyze`")
    if view.layer != MAIN_LAYER:
        changed = sorted({k for p in view.params.values() for k in p})
        raise ConfigError(f"experiment {experiment_id!r} of layer {view.layer!r} changes {changed}, not the backend: "
                          "replay re-runs logged queries through two backends, so it has nothing to compare; analyse "
                          "it with `abharness analyze`, or replay the main layer's experiment")
    backend_of = {arm: str(p["backend"]) for arm, p in view.params.items()}
    return ReplayArms(view.control, view.treatments[0], backend_of)
