"""Which arms an experiment of a layered file has, for ``analyze`` and ``replay`` (issue 16; docs/analysis.md).

A layered proxy (``abharness.config_layers``) logs one ordinary impression row per experiment a unit is enrolled
in, with that experiment's id and arm, and a row per search in the holdout pseudo-experiment (``holdout.id``,
arm ``holdout`` for held-out units, ``rest`` for everyone else). So every experiment is analysed by its id with the
unchanged statistics; what changes is where its control arm and allocation come from:

* an experiment of any layer: its arms, roles and weights in the file. Units outside its bucket range, outside
  its targeting, or in the holdout write no row for it, so its rows are exactly its enrolled population and the
  sample-ratio check compares the arm counts with its weights within that population;
* the holdout pseudo-experiment: control ``holdout``, treatment ``rest``, expected shares ``(share, 1 - share)``
  (every search writes one holdout row); its effect is the combined effect of everything launched and running.

``arms_view(config, experiment_id)`` returns an object with the ``control``, ``ordered_weights()`` and
``exclusions`` that ``AnalysisOptions.with_config`` reads, so the analysis itself is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from abharness.config_layers import MAIN_LAYER
from abharness.core.assignment import BUCKETS
from abharness.errors import ConfigError

__all__ = ["ArmsView", "arms_view", "holdout_id", "is_layered_config", "HOLDOUT_ARM", "REST_ARM", "HOLDOUT_LABEL"]

HOLDOUT_ARM = "holdout"
REST_ARM = "rest"
HOLDOUT_LABEL = "combined effect of everything launched (holdout vs rest)"
_DEFAULT_HOLDOUT_ID = "holdout"


@dataclass(frozen=True)
class ArmsView:
    """One experiment of a layered file as the analysis sees it: control, weights in arm order, roles, params."""

    experiment_id: str
    layer: str
    control: str
    weights: Mapping[str, float]
    roles: Mapping[str, str]
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    label: str = ""
    holdout: bool = False
    exclusions: Any = None
    status: str = "running"
    targeting: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    share: float = 1.0  # of its layer's buckets (the holdout: of all units)

    def ordered_weights(self) -> dict[str, float]:
        return dict(self.weights)

    @property
    def treatments(self) -> list[str]:
        return [a for a in self.weights if a != self.control]

    def summary(self) -> dict[str, Any]:
        """What the report shows about where the arms came from (JSON-ready)."""
        return {"experiment_id": self.experiment_id, "layer": self.layer, "label": self.label,
                "holdout": self.holdout, "status": self.status, "share": self.share,
                "weights": dict(self.weights), "roles": dict(self.roles),
                "params": {a: dict(p) for a, p in self.params.items()},
                "targeting": {k: list(v) for k, v in self.targeting.items()}}


def is_layered_config(config: Any) -> bool:
    """Whether ``config`` is an experiment file with layers, a holdout or a partial bucket range."""
    if config is None or not hasattr(config, "design"):
        return False
    return bool(getattr(config, "layers", None)) or getattr(config, "holdout", None) is not None or (
        tuple(getattr(config, "buckets", (0, BUCKETS))) != (0, BUCKETS))


def holdout_id(config: Any) -> str | None:
    """The pseudo-experiment id the holdout's rows are logged under (None without a holdout)."""
    h = getattr(config, "holdout", None)
    return None if h is None else str(getattr(h, "id", None) or _DEFAULT_HOLDOUT_ID)


def arms_view(config: Any, experiment_id: str) -> ArmsView | None:
    """The arms of ``experiment_id`` in a layered file; None for a single-experiment file (nothing changes).

    Raises ``ConfigError`` naming the known experiment ids when the file has no such experiment.
    """
    if not is_layered_config(config):
        return None
    exclusions = getattr(config, "exclusions", None)
    hid = holdout_id(config)
    if experiment_id == hid:
        share = float(config.holdout.share)
        return ArmsView(experiment_id, "-", HOLDOUT_ARM, {HOLDOUT_ARM: share, REST_ARM: 1.0 - share},
                        {HOLDOUT_ARM: "control", REST_ARM: "treatment"}, label=HOLDOUT_LABEL, holdout=True,
                        exclusions=exclusions, share=share)
    design = config.design()
    try:
        layer, exp = design.experiment(experiment_id)
    except KeyError:
        known = [e.experiment_id for la in design.layers for e in la.experiments] + ([hid] if hid else [])
        raise ConfigError(f"experiment {experiment_id!r} is not in the experiment file; its experiments are "
                          f"{known}: check --experiment or --config") from None
    weights = {a.name: float(exp.weights[a.name]) for a in exp.arms}
    label = "" if layer.name == MAIN_LAYER and experiment_id == config.experiment_id else (
        f"experiment of layer {layer.name!r}")
    return ArmsView(
        experiment_id, layer.name, exp.control.name, weights, {a.name: a.role for a in exp.arms},
        params={a.name: dict(a.params) for a in exp.arms}, label=label, exclusions=exclusions,
        status=exp.status, targeting={c.key: tuple(sorted(c.values)) for c in exp.targeting}, share=exp.share,
    )
