"""The ``layers:`` and ``holdout:`` sections of the experiment file (pydantic at the boundary; docs/proxy.md).

The single-experiment format is unchanged: its top-level experiment (``experiment_id``, ``salt``, ``arms``,
``weights``) becomes the one experiment of the layer ``main``, which owns the backend and, by default, all buckets;
assignment is then exactly what it always was. ``layers:`` adds layers that own other parameters (``k``, a rerank
flag, ...), each with mutually exclusive experiments on bucket ranges; a ``layers:`` entry named ``main`` adds
experiments to the backend layer (in buckets the top-level experiment leaves free, see ``buckets``); any other layer
that owns ``backend`` is refused when the file is loaded (two layers would both choose the backend).
``design_of(config)`` builds the pure ``abharness.core.layers.Design``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from abharness.core.assignment import BUCKETS
from abharness.core.layers import Arm, Condition, Design, Holdout, Layer, LayerExperiment
from abharness.errors import ConfigError

if TYPE_CHECKING:
    from abharness.config import ExperimentConfig

__all__ = [
    "LayerArmConfig", "LayerExperimentConfig", "LayerConfig", "HoldoutConfig", "MAIN_LAYER", "design_of",
    "refuse_unserved", "is_layered", "experiment_of", "SERVED_PARAMS",
]

MAIN_LAYER = "main"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
Scalar = str | int | float | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_name(v: str, what: str) -> str:
    if not _NAME.match(v):
        raise ValueError(f"{v!r} is not a valid {what}; use 1-64 letters, digits, '_', '.', '-'")
    return v


class LayerArmConfig(_Strict):
    """An arm of a layered experiment and the values it sets (only for parameters its layer owns)."""

    name: str
    role: Literal["control", "treatment"]
    params: dict[str, Scalar] = Field(default_factory=dict, description='e.g. {k: 20}; in the main layer '
                                      '{backend: <a top-level arm name>}')

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "arm name")


class LayerExperimentConfig(_Strict):
    """One experiment of a layer: its bucket range, arms, weights, targeting and status."""

    experiment_id: str
    salt: str | None = Field(None, min_length=1, description="arm-split salt (default: <layer salt>/<experiment_id>)")
    buckets: tuple[int, int] = Field((0, BUCKETS), description=f"half-open range [lo, hi) of the layer's {BUCKETS} "
                                     "buckets; experiments of one layer need disjoint ranges")
    arms: list[LayerArmConfig] = Field(min_length=2)
    weights: dict[str, float]
    targeting: dict[str, str | list[str]] = Field(
        default_factory=dict, description="context key -> value (equality) or list of values (membership); all "
        "must match, else the unit is not enrolled and sees the layer's defaults")
    status: Literal["draft", "running", "stopped", "launched"] = "running"
    launched_arm: str | None = Field(None, description="status launched: the arm shipped to every unit outside "
                                     "the holdout (its buckets become free)")

    @field_validator("experiment_id")
    @classmethod
    def _id(cls, v: str) -> str:
        return _check_name(v, "experiment id")


class LayerConfig(_Strict):
    name: str
    salt: str = Field(min_length=1, description="the layer's hashing salt (independent of every other layer's)")
    owns: list[str] = Field(default_factory=list, description="parameters this layer's experiments may change, "
                            "e.g. [k] or [rerank]; the main layer owns [backend]")
    defaults: dict[str, Scalar] = Field(default_factory=dict, description="values of owned parameters for units "
                                        "in no experiment of the layer (k defaults to the top-level k)")
    experiments: list[LayerExperimentConfig] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "layer name")


class HoldoutConfig(_Strict):
    """A global holdout: a fixed share of units that sees only control of every experiment."""

    id: str = Field("holdout", description="the pseudo-experiment its rows are logged in (arm 'holdout', role "
                    "control, for held-out units; arm 'rest', role treatment, for everyone else); not an "
                    "experiment id of the file")
    salt: str = Field(min_length=1, description="keep it for the life of the holdout (months)")
    share: float = Field(ge=0.0, lt=1.0, description="e.g. 0.05")

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return _check_name(v, "holdout id")


def experiment_of(cfg: LayerExperimentConfig, layer_salt: str) -> LayerExperiment:
    """The pure experiment of one ``layers:`` entry (its arm-split salt defaults to ``<layer salt>/<id>``)."""
    targeting = tuple(
        Condition.member(k, v) if isinstance(v, list) else Condition.equals(k, v) for k, v in cfg.targeting.items()
    )
    return LayerExperiment(
        experiment_id=cfg.experiment_id,
        salt=cfg.salt or f"{layer_salt}/{cfg.experiment_id}",
        lo=cfg.buckets[0],
        hi=cfg.buckets[1],
        arms=tuple(Arm(a.name, a.role, dict(a.params)) for a in cfg.arms),
        weights=dict(cfg.weights),
        targeting=targeting,
        status=cfg.status,
        launched_arm=cfg.launched_arm,
    )


def design_of(config: ExperimentConfig) -> Design:
    """The layered design of an experiment file; raises ``ValueError`` naming the layer, experiment and fix.

    The top-level experiment is experiment ``config.experiment_id`` of layer ``main`` (salt ``config.salt`` for
    the arm split, so a file without ``layers:`` assigns exactly as before); its arms set ``backend`` to their own
    name.
    """
    arm_names = [a.name for a in config.arms]
    layer_salt = config.layer_salt or f"{config.salt}/layer"
    main_exps = [LayerExperiment(
        experiment_id=config.experiment_id,
        salt=config.salt,
        lo=config.buckets[0],
        hi=config.buckets[1],
        arms=tuple(Arm(a.name, a.role, {"backend": a.name}) for a in config.arms),
        weights=config.ordered_weights(),
    )]
    defaults: dict[str, Scalar] = {"backend": config.control, "k": config.k}
    layers: list[Layer] = []
    for i, lc in enumerate(config.layers):
        where = f"layers.{i} ({lc.name!r})"
        try:
            if lc.name == MAIN_LAYER:
                if lc.owns not in ([], ["backend"]) or lc.defaults:
                    raise ValueError("the main layer owns [backend] and its default is the control arm; drop owns "
                                     "and defaults")
                if lc.salt != layer_salt:
                    raise ValueError(f"salt {lc.salt!r} differs from the main layer's ({layer_salt!r}, set by "
                                     "top-level layer_salt); set layer_salt instead")
                for exp in lc.experiments:
                    for arm in exp.arms:
                        backend = arm.params.get("backend")
                        if backend not in arm_names:
                            raise ValueError(f"arm {arm.name!r} of {exp.experiment_id!r}: params.backend "
                                             f"{backend!r} is not a top-level arm; expected one of {arm_names}")
                main_exps += [experiment_of(e, layer_salt) for e in lc.experiments]
                continue
            foreign = sorted(set(lc.defaults) - set(lc.owns))
            if foreign:
                raise ValueError(f"defaults {foreign} are not among owns {lc.owns}; a layer sets only what it owns")
            for exp in lc.experiments:
                for arm in exp.arms:
                    k = arm.params.get("k")
                    if k is not None and (isinstance(k, bool) or not isinstance(k, int)
                                          or not 1 <= k <= config.limits.max_k):
                        raise ValueError(f"arm {arm.name!r} of {exp.experiment_id!r}: params.k {k!r} must be a "
                                         f"whole number in [1, limits.max_k={config.limits.max_k}]")
            missing = sorted(set(lc.owns) - set(lc.defaults) - {"k", "backend"})
            if missing:
                raise ValueError(f"owns {missing} without a default; add defaults: {{{missing[0]}: ...}}")
            defaults.update(lc.defaults)
            layers.append(Layer(lc.name, lc.salt, frozenset(lc.owns), tuple(experiment_of(e, lc.salt)
                                                                            for e in lc.experiments)))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    main = Layer(MAIN_LAYER, layer_salt, frozenset({"backend"}), tuple(main_exps))
    holdout = Holdout(config.holdout.salt, config.holdout.share) if config.holdout else None
    if config.holdout is not None:
        ids = {e.experiment_id for la in (main, *layers) for e in la.experiments}
        if config.holdout.id in ids:
            raise ValueError(f"holdout.id {config.holdout.id!r} is also an experiment id; the holdout's rows are "
                             "logged under its id, so give it another (e.g. holdout: {id: holdout-2026, ...})")
    return Design([main, *layers], holdout=holdout, defaults=defaults)


def is_layered(config: ExperimentConfig) -> bool:
    """True when the file uses ``layers:``, ``holdout:`` or a partial ``buckets`` (served by
    ``abharness.serve.layered``); False for a single-experiment file, which is served exactly as before."""
    return bool(config.layers) or config.holdout is not None or tuple(config.buckets) != (0, BUCKETS)


#: Parameters the proxy acts on. Another owned parameter (a rerank flag, a query rewrite) would be assigned and
#: logged but change nothing, so ``refuse_unserved`` refuses it until the proxy wires it.
SERVED_PARAMS = frozenset({"backend", "k"})


def refuse_unserved(config: ExperimentConfig) -> None:
    """Refuse, before a port is bound, the layered parts the proxy cannot serve (one line naming the fix).

    The proxy serves layers, the holdout, targeting and lifecycle (``abharness.serve.layered``) in ``mode: ab``;
    interleaving and shadow rankings compare two fixed arms and are not defined per layer. It acts on the
    parameters in ``SERVED_PARAMS``: a layer owning anything else would log arms that change nothing.
    """
    if not is_layered(config):
        return
    if config.mode != "ab":
        raise ConfigError(
            f"mode: {config.mode!r} with layers/holdout/buckets; several experiments at once are served in mode ab "
            "only; set mode: ab or remove layers, holdout and buckets"
        )
    for lc in config.layers:
        idle = sorted(set(lc.owns) - SERVED_PARAMS)
        if idle:
            raise ConfigError(
                f"layers: layer {lc.name!r} owns {idle}, which the proxy does not act on (it acts on "
                f"{sorted(SERVED_PARAMS)}); its arms would be logged but change nothing: remove the layer or its "
                "parameter"
            )
