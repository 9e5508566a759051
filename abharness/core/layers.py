"""Several experiments at once: layers, mutual exclusion, a global holdout and targeting. Pure: no I/O, no clock.

Design (Tang, Agarwal, O'Brien, Meyer, "Overlapping Experiment Infrastructure: More, Better, Faster
Experimentation", KDD 2010; GrowthBook namespaces)

Layer
    A layer owns a set of *parameters* (``"backend"``: which arm's index serves the query; ``"k"``; a rerank
    flag, ...). Its experiments are mutually exclusive: each owns a half-open range ``[lo, hi)`` of the layer's
    ``BUCKETS`` buckets, and a unit belongs to the experiment whose range holds ``bucket(layer.salt, unit)``.
    Ranges in one layer never overlap; buckets no experiment owns are free (a new experiment can start there
    while the others run, without moving any of their units).
Overlap across layers
    Each layer hashes with its own salt, so the layer buckets of one unit are independent across layers: a unit is
    in at most one experiment per layer, and its experiments in different layers are crossed independently.
Arms within an experiment
    Inside its range, an experiment splits units into arms with the existing ``assignment.allocation`` layout on a
    second, independent hash ``bucket(experiment.salt, unit)``; so raising a treatment's weight only moves units
    from control (the ramp rule of ``assignment``), and an experiment whose range is the whole layer assigns
    exactly as the single-experiment proxy always did with that salt (the old config format keeps every unit's arm).
Parameters
    A layer may only change what it owns: an arm's ``params`` keys must be among its layer's ``owns``, and no
    parameter is owned by two layers (two layers both choosing the backend is refused when the design is built).
Global holdout
    ``bucket(holdout.salt, unit) < holdout.share * BUCKETS`` puts a unit in the holdout: it is in no experiment and
    sees every layer's defaults (control), for as long as the holdout salt stays (months). Comparing holdout units
    with everyone else measures the combined effect of everything launched.
Targeting
    An experiment may carry conditions on the request context (``key == value`` or ``key in {values}``, all must
    hold). They are checked *before* assignment: a unit in the experiment's range whose context does not match is
    not enrolled and sees the layer's defaults, so arm shares (and SRM) are computed within the targeted population.
Lifecycle
    ``draft`` and ``stopped`` experiments enrol nobody (their units see the defaults: control); only ``running``
    ones assign. A ``launched`` experiment enrols nobody and frees its buckets; its ``launched_arm``'s parameters
    replace the defaults for every unit outside the global holdout (the holdout keeps the original defaults, so
    holdout against the rest measures the combined effect of everything launched). Start and stop times are the
    caller's business (the core reads no clock).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from abharness.core.assignment import BUCKETS, Allocation, allocation, bucket

__all__ = [
    "Condition",
    "Arm",
    "LayerExperiment",
    "Layer",
    "Holdout",
    "Enrollment",
    "Assignment",
    "Design",
    "STATUSES",
    "TRANSITIONS",
    "evolve",
    "row_impression_id",
]

Status = Literal["draft", "running", "stopped", "launched"]
STATUSES: tuple[str, ...] = ("draft", "running", "stopped", "launched")
#: Lifecycle moves (status -> statuses it may go to). A stopped experiment never runs again: its salt would put the
#: same units back in the same arms after a gap, which no analysis window expects; start a new experiment instead.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "draft": ("running",),
    "running": ("stopped", "launched"),
    "stopped": ("launched",),
    "launched": (),
}
Scalar = str | int | float | bool


@dataclass(frozen=True, slots=True)
class Condition:
    """``context[key] in values`` (one value: equality). A missing key never matches."""

    key: str
    values: frozenset[str]

    @classmethod
    def equals(cls, key: str, value: str) -> Condition:
        return cls(key, frozenset({str(value)}))

    @classmethod
    def member(cls, key: str, values: Iterable[str]) -> Condition:
        vals = frozenset(str(v) for v in values)
        if not vals:
            raise ValueError(f"condition on {key!r} has no values; give at least one value to match")
        return cls(key, vals)

    def matches(self, context: Mapping[str, str]) -> bool:
        value = context.get(self.key)
        return value is not None and str(value) in self.values


@dataclass(frozen=True, slots=True)
class Arm:
    """An arm of a layered experiment: its name, role and the values it sets for parameters its layer owns."""

    name: str
    role: Literal["control", "treatment"]
    params: Mapping[str, Scalar] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LayerExperiment:
    """An experiment owning buckets ``[lo, hi)`` of its layer, split into arms by ``weights`` on ``salt``."""

    experiment_id: str
    salt: str
    lo: int
    hi: int
    arms: tuple[Arm, ...]
    weights: Mapping[str, float]
    targeting: tuple[Condition, ...] = ()
    status: Status = "running"
    launched_arm: str | None = None

    def __post_init__(self) -> None:
        if not (0 <= self.lo < self.hi <= BUCKETS):
            raise ValueError(
                f"experiment {self.experiment_id!r}: bucket range [{self.lo}, {self.hi}) is not within "
                f"[0, {BUCKETS}) with lo < hi; give e.g. buckets: [0, 5000]"
            )
        if self.status not in STATUSES:
            raise ValueError(f"experiment {self.experiment_id!r}: status {self.status!r}; expected one of {STATUSES}")
        if (self.status == "launched") != (self.launched_arm is not None) or (
                self.launched_arm is not None and self.launched_arm not in [a.name for a in self.arms]):
            raise ValueError(
                f"experiment {self.experiment_id!r}: status 'launched' goes with launched_arm naming one of its arms "
                f"(got status {self.status!r}, launched_arm {self.launched_arm!r})"
            )
        controls = [a.name for a in self.arms if a.role == "control"]
        if len(controls) != 1:
            raise ValueError(
                f"experiment {self.experiment_id!r}: needs exactly one control arm, found {len(controls)} {controls}"
            )
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names) or set(self.weights) != set(names):
            raise ValueError(
                f"experiment {self.experiment_id!r}: weights {sorted(self.weights)} must name each arm "
                f"{names} exactly once"
            )

    @property
    def control(self) -> Arm:
        return next(a for a in self.arms if a.role == "control")

    @property
    def share(self) -> float:
        """Fraction of the layer's buckets the experiment owns."""
        return (self.hi - self.lo) / BUCKETS

    def allocation(self) -> Allocation:
        ordered = {a.name: float(self.weights[a.name]) for a in self.arms}
        return allocation(ordered, self.control.name)

    def targets(self, context: Mapping[str, str]) -> bool:
        return all(c.matches(context) for c in self.targeting)


@dataclass(frozen=True, slots=True)
class Layer:
    """A layer: its salt, the parameters it owns and its mutually exclusive experiments."""

    name: str
    salt: str
    owns: frozenset[str]
    experiments: tuple[LayerExperiment, ...] = ()

    def __post_init__(self) -> None:
        if not self.owns:
            raise ValueError(f"layer {self.name!r} owns no parameter; give owns: e.g. [backend] or [k]")
        spans = sorted((e for e in self.experiments if e.status != "launched"), key=lambda e: e.lo)
        for a, b in zip(spans, spans[1:]):
            if b.lo < a.hi:
                raise ValueError(
                    f"layer {self.name!r}: experiments {a.experiment_id!r} [{a.lo}, {a.hi}) and {b.experiment_id!r} "
                    f"[{b.lo}, {b.hi}) share buckets; experiments in one layer are mutually exclusive, give them "
                    "disjoint ranges"
                )
        for exp in self.experiments:
            for arm in exp.arms:
                foreign = sorted(set(arm.params) - self.owns)
                if foreign:
                    raise ValueError(
                        f"layer {self.name!r}: arm {arm.name!r} of experiment {exp.experiment_id!r} sets {foreign}, "
                        f"which the layer does not own (owns {sorted(self.owns)}); move the experiment to the layer "
                        "that owns them"
                    )

    def free_ranges(self) -> list[tuple[int, int]]:
        """Bucket ranges no experiment of this layer owns (where a new experiment can start)."""
        out, at = [], 0
        for exp in sorted((e for e in self.experiments if e.status != "launched"), key=lambda e: e.lo):
            if exp.lo > at:
                out.append((at, exp.lo))
            at = exp.hi
        if at < BUCKETS:
            out.append((at, BUCKETS))
        return out


@dataclass(frozen=True, slots=True)
class Holdout:
    """A global holdout: ``share`` of units (by ``bucket(salt, unit)``) see only the defaults of every layer."""

    salt: str
    share: float

    def __post_init__(self) -> None:
        if not (0.0 <= self.share < 1.0):
            raise ValueError(f"holdout share {self.share}; expected a number in [0, 1), e.g. 0.05")

    def holds(self, unit_id: str) -> bool:
        return bucket(self.salt, unit_id) < round(self.share * BUCKETS)


@dataclass(frozen=True, slots=True)
class Enrollment:
    """One (layer, experiment, arm) a unit is in."""

    layer: str
    experiment_id: str
    arm: str
    role: Literal["control", "treatment"]


@dataclass(frozen=True, slots=True)
class Assignment:
    """Everything decided for one unit and request: its enrollments, whether it is held out, and the parameters."""

    enrollments: tuple[Enrollment, ...]
    holdout: bool
    params: Mapping[str, Scalar]

    def arm_in(self, experiment_id: str) -> str | None:
        return next((e.arm for e in self.enrollments if e.experiment_id == experiment_id), None)


class Design:
    """The layers and holdout of one proxy. Building it checks the cross-layer rules; ``assign`` is the hot path.

    ``defaults`` are the parameter values a unit gets where no experiment sets them (e.g. ``{"k": 10}``); a layer's
    running experiment's arm overrides the parameters that layer owns.
    """

    __slots__ = ("layers", "holdout", "defaults", "launched", "_plan")

    def __init__(
        self,
        layers: Iterable[Layer],
        *,
        holdout: Holdout | None = None,
        defaults: Mapping[str, Scalar] | None = None,
    ) -> None:
        self.layers = tuple(layers)
        self.holdout = holdout
        self.defaults = dict(defaults or {})
        names = [la.name for la in self.layers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"layers {dupes} are declared twice; give each layer a unique name")
        owner: dict[str, str] = {}
        for la in self.layers:
            for p in sorted(la.owns):
                if p in owner:
                    what = "choose the backend" if p == "backend" else f"set {p!r}"
                    raise ValueError(
                        f"layers {owner[p]!r} and {la.name!r} both {what}; a parameter belongs to one layer, so "
                        f"put experiments that change {p!r} as mutually exclusive experiments in one layer"
                    )
                owner[p] = la.name
        ids = [e.experiment_id for la in self.layers for e in la.experiments]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"experiment ids {dupes} appear more than once; each experiment needs a unique id")
        # What launched experiments ship: every unit outside the holdout gets it in place of the default.
        self.launched: dict[str, Scalar] = dict(self.defaults)
        for la in self.layers:
            shipped: dict[str, str] = {}
            for e in la.experiments:
                if e.status != "launched":
                    continue
                params = next(a for a in e.arms if a.name == e.launched_arm).params
                clash = sorted(set(params) & set(shipped))
                if clash:
                    raise ValueError(
                        f"layer {la.name!r}: launched experiments {shipped[clash[0]]!r} and {e.experiment_id!r} both "
                        f"ship {clash}; keep one launched and set the other to stopped"
                    )
                shipped.update({p: e.experiment_id for p in params})
                self.launched.update(params)
        # Precomputed per layer: (layer, full-range experiment or None, running experiments with their allocations).
        plan = []
        for la in self.layers:
            running = tuple((e, e.allocation(), {a.name: a for a in e.arms})
                            for e in la.experiments if e.status == "running")
            full = running[0] if len(running) == 1 and running[0][0].lo == 0 and running[0][0].hi == BUCKETS else None
            plan.append((la, full, running))
        self._plan = tuple(plan)

    def experiment(self, experiment_id: str) -> tuple[Layer, LayerExperiment]:
        for la in self.layers:
            for e in la.experiments:
                if e.experiment_id == experiment_id:
                    return la, e
        known = [e.experiment_id for la in self.layers for e in la.experiments]
        raise KeyError(f"no experiment {experiment_id!r}; known: {known}")

    def assign(self, unit_id: str, context: Mapping[str, str] | None = None) -> Assignment:
        """The unit's enrollments (at most one per layer) and resulting parameters for a request with ``context``."""
        if self.holdout is not None and self.holdout.holds(unit_id):
            return Assignment((), True, dict(self.defaults))
        params = dict(self.launched)
        ctx = context or {}
        out = []
        for la, full, running in self._plan:
            if full is not None:
                hit = full
            else:
                b = bucket(la.salt, unit_id) if running else -1
                hit = next((r for r in running if r[0].lo <= b < r[0].hi), None)
            if hit is None:
                continue
            exp, alloc, arms = hit
            if exp.targeting and not exp.targets(ctx):
                continue
            arm_name = alloc.arm_for_bucket(bucket(exp.salt, unit_id))
            arm = arms[arm_name]
            out.append(Enrollment(la.name, exp.experiment_id, arm.name, arm.role))
            params.update(arm.params)
        return Assignment(tuple(out), False, params)


def row_impression_id(base_id: str, experiment_id: str, main_experiment_id: str) -> str:
    """The impression id of a layered search's row in ``experiment_id``.

    A layered search logs one row per experiment the unit is in; the top-level (main) experiment's row keeps the
    search's ``base_id``, every other row is ``"<base_id>~<experiment_id>"`` (``~`` is not allowed in experiment
    ids, so the two parts always split apart again).
    """
    return base_id if experiment_id == main_experiment_id else f"{base_id}~{experiment_id}"


def evolve(
    design: Design,
    *,
    status: Mapping[str, tuple[Status, str | None]] | None = None,
    added: Iterable[tuple[str, LayerExperiment]] = (),
    weights: Mapping[str, Mapping[str, float]] | None = None,
) -> Design:
    """A new ``Design`` with lifecycle changes applied; raises ``ValueError`` naming what breaks a rule.

    ``status``: experiment id -> (new status, launched arm or None); ``added``: (layer name, experiment) pairs, new
    experiments appended to their layer; ``weights``: experiment id -> new arm weights (a ramp). Every rule of the
    constructors is checked again (disjoint ranges, owned parameters, one launched arm per parameter).
    """
    status = dict(status or {})
    weights = dict(weights or {})
    added = list(added)
    names = {la.name for la in design.layers}
    for layer_name, exp in added:
        if layer_name not in names:
            raise ValueError(f"no layer {layer_name!r} for experiment {exp.experiment_id!r}; layers: {sorted(names)}")
    known = {e.experiment_id for la in design.layers for e in la.experiments} | {e.experiment_id for _, e in added}
    unknown = sorted((set(status) | set(weights)) - known)
    if unknown:
        raise ValueError(f"no experiment {unknown}; known: {sorted(known)}")
    layers = []
    for la in design.layers:
        exps = []
        for e in (*la.experiments, *(e for name, e in added if name == la.name)):
            if e.experiment_id in status:
                new, arm = status[e.experiment_id]
                e = replace(e, status=new, launched_arm=arm)
            if e.experiment_id in weights:
                e = replace(e, weights=dict(weights[e.experiment_id]))
            exps.append(e)
        layers.append(replace(la, experiments=tuple(exps)))
    return Design(layers, holdout=design.holdout, defaults=design.defaults)
