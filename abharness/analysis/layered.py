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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from abharness.config_layers import MAIN_LAYER, is_layered
from abharness.errors import ConfigError

__all__ = ["ArmsView", "arms_view", "created_experiments", "layered_experiments", "holdout_id", "is_layered_config",
           "HOLDOUT_ARM", "REST_ARM", "HOLDOUT_LABEL"]

HOLDOUT_ARM = "holdout"
REST_ARM = "rest"
HOLDOUT_LABEL = "combined effect of everything launched (holdout vs rest)"


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
    return is_layered(config)


def holdout_id(config: Any) -> str | None:
    """The pseudo-experiment id the holdout's rows are logged under (None without a holdout)."""
    h = getattr(config, "holdout", None)
    return None if h is None else str(h.id)


def created_experiments(config: Any, audit: Callable[[], Sequence[Any]] | None) -> dict[str, tuple[str, Any]]:
    """Experiments created through the admin API (``experiment_create`` audit entries, written under the file's
    top-level experiment id): experiment id -> (layer name, its ``LayerExperiment``). Unreadable entries are
    skipped (the proxy skipped them too)."""
    if audit is None:
        return {}
    from abharness.config_layers import LayerExperimentConfig, experiment_of

    try:
        entries = list(audit())
    except Exception:  # noqa: BLE001 - the audit log is optional evidence; the file's experiments still analyse
        return {}
    salts = {MAIN_LAYER: config.layer_salt or f"{config.salt}/layer", **{la.name: la.salt for la in config.layers}}
    out: dict[str, tuple[str, Any]] = {}
    for e in entries:
        if getattr(e, "action", None) != "experiment_create":
            continue
        p = e.payload
        try:
            eid, layer = str(p["experiment_id"]), str(p["layer"])
            spec = LayerExperimentConfig.model_validate({**p["spec"], "experiment_id": eid, "status": "running"})
            out.setdefault(eid, (layer, experiment_of(spec, salts[layer])))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def layered_experiments(config: Any, audit: Callable[[], Sequence[Any]] | None = None) -> list[tuple[str, str]]:
    """(layer, experiment id) of every experiment of the file and every one created through the admin API."""
    design = config.design()
    out = [(la.name, e.experiment_id) for la in design.layers for e in la.experiments]
    known = {eid for _, eid in out}
    out += [(layer, eid) for eid, (layer, _) in created_experiments(config, audit).items() if eid not in known]
    return out


def arms_view(config: Any, experiment_id: str,
              audit: Callable[[], Sequence[Any]] | None = None) -> ArmsView | None:
    """The arms of ``experiment_id`` in a layered file; None for a single-experiment file (nothing changes).

    ``audit`` (e.g. ``lambda: store.audit_log(config.experiment_id)``) adds the experiments created through the
    admin API. Raises ``ConfigError`` naming the known experiment ids when there is no such experiment.
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
        layer_name = layer.name
    except KeyError:
        created = created_experiments(config, audit)
        if experiment_id not in created:
            known = [e.experiment_id for la in design.layers for e in la.experiments] + list(created) + (
                [hid] if hid else [])
            raise ConfigError(f"experiment {experiment_id!r} is not in the experiment file nor created through the "
                              f"admin API; its experiments are {known}: check --experiment, or for an experiment no "
                              "longer in the file analyse without --config and give --control and --weights") from None
        layer_name, exp = created[experiment_id]
    weights = {a.name: float(exp.weights[a.name]) for a in exp.arms}
    label = "" if layer_name == MAIN_LAYER and experiment_id == config.experiment_id else (
        f"experiment of layer {layer_name!r}")
    return ArmsView(
        experiment_id, layer_name, exp.control.name, weights, {a.name: a.role for a in exp.arms},
        params={a.name: dict(a.params) for a in exp.arms}, label=label, exclusions=exclusions,
        status=exp.status, targeting={c.key: tuple(sorted(c.values)) for c in exp.targeting}, share=exp.share,
    )
