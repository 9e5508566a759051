"""Serving a layered experiment file: route a search by the ``Design``, fan its impression out to one row per
experiment, credit a click to each row, and fold lifecycle changes from the audit log onto the file's design.

Used by ``ProxyService`` when the file has ``layers:``, ``holdout:`` or a partial ``buckets``
(``abharness.config_layers.is_layered``); a single-experiment file never reaches this module.

Rows (the storage convention the per-experiment analysis reads; docs/proxy.md, *Several experiments at once*)
    One search of a unit enrolled in experiments E1..En is logged as n ordinary impression rows, one per experiment:
    ``experiment_id`` = Ei, ``arm`` = the unit's arm in Ei, the same query, results, k, latency and fingerprints, and
    ``context`` = the request context plus ``{"layer": <Ei's layer>, "impression": <base impression id>}``. The
    top-level experiment's row keeps the base impression id; the others are ``"<base>~<Ei>"``
    (``core.layers.row_impression_id``). With a global holdout every search also writes a row in the pseudo-experiment
    ``holdout.id``: arm ``holdout`` for held-out units (who are in no other experiment), ``rest`` for everyone else
    (layer ``"holdout"``). A unit in no experiment and no holdout is not an exposure: no row, no token.
    Untargeted units write no row for a targeted experiment, so its SRM is computed within the targeted population.
Parameters
    The main layer picks the backend (the arm whose index answers); when another layer owns ``k`` the design decides
    ``k`` for every unit (a request's ``k`` is then ignored) and the rows record the depth actually used.
Clicks
    The impression token carries the ``(experiment_id, arm)`` pairs of the rows; a click or feedback is logged once
    per pair with that row's impression id, experiment and arm. Tokens without them credit one row, as before.
Lifecycle
    Admin changes (``experiment_create`` a draft in a layer's free buckets, ``experiment_start``, ``experiment_stop``,
    ``experiment_launch``) are audit entries written under the proxy's top-level ``experiment_id`` (so replicas and
    restarts replay them with the admin sync that already carries ramps and pauses); the design is the file's, with
    the entries applied in log order (by time). An entry that no longer fits (a range another replica's earlier
    experiment took before the two replicas saw each other's change, an experiment the file removed) is skipped on
    every replica alike and reported by ``GET /admin/layers``, never fatal.
    Stickiness: arms are hashes of the unit with salts that live as long as the experiment, so a unit keeps its arm
    across reloads and replicas as long as the experiment's range, salt and weights stay.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from abharness.config import ExperimentConfig
from abharness.config_layers import MAIN_LAYER, LayerExperimentConfig, design_of, experiment_of
from abharness.core.events import AuditEntry, Click, Feedback, Impression
from abharness.core.layers import TRANSITIONS, Design, evolve, row_impression_id
from abharness.core.tokens import ImpressionClaims
from abharness.serve.state import ExperimentState

__all__ = ["LayeredRouter", "Routed", "HOLDOUT_LAYER", "LifecycleError"]

log = logging.getLogger(__name__)
HOLDOUT_LAYER = "holdout"  # the ``layer`` of a holdout row's context


class LifecycleError(ValueError):
    """A lifecycle change that breaks a rule (unknown experiment, a move its status does not allow, taken buckets).

    ``status`` is the HTTP status the admin API answers with (404 unknown, 409 conflict, 422 invalid)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Routed:
    """What the design decided for one search: the backend arm, ``k`` (None: the request's or the file's) and the
    rows to log as ``(layer, experiment_id, arm)``."""

    backend: str
    k: int | None
    rows: tuple[tuple[str, str, str], ...]
    holdout: bool


@dataclass(frozen=True, slots=True)
class _Built:
    version: int
    design: Design
    skipped: tuple[tuple[AuditEntry, str], ...]
    layer_of: Mapping[str, str]


def _order(entry: AuditEntry) -> tuple[float, str, str]:
    return (entry.ts, entry.action, json.dumps(entry.payload, sort_keys=True, default=str))


class LayeredRouter:
    """Routes searches of a layered file and fans their events out (see the module docstring)."""

    def __init__(self, config: ExperimentConfig, state: ExperimentState) -> None:
        self.config = config
        self.state = state
        self.main_id = config.experiment_id
        self.holdout_id = config.holdout.id if config.holdout is not None else None
        self.layer_owns_k = any("k" in lc.owns for lc in config.layers)
        self._built: _Built | None = None
        self.lock = asyncio.Lock()  # held by the admin API around check + write of one lifecycle change

    # ------------------------------------------------------------------------------------------------ design
    def design(self) -> Design:
        """The live design: the file's, with the admin's weights and the lifecycle entries applied (cached)."""
        return self._current().design

    def skipped(self) -> tuple[tuple[AuditEntry, str], ...]:
        """Lifecycle entries that did not fit when folded, with the reason."""
        return self._current().skipped

    def _current(self) -> _Built:
        built = self._built
        if built is None or built.version != self.state.version:
            built = self._build(self.state)
            self._built = built
        return built

    def _build(self, state: ExperimentState, extra: AuditEntry | None = None) -> _Built:
        cfg = self.config
        if dict(state.weights) != cfg.ordered_weights():
            cfg = cfg.model_copy(update={"weights": dict(state.weights)})
        design = design_of(cfg)
        skipped = []
        # Log order (time, then content), not arrival order: two replicas that each made a change before seeing the
        # other's fold the same sequence, so they agree on which of two clashing changes stands.
        for entry in sorted(state.lifecycle, key=_order):
            try:
                design = self._fold(design, entry)
            except (LifecycleError, ValueError, KeyError, TypeError) as exc:
                skipped.append((entry, str(exc)))
        if extra is not None:
            design = self._fold(design, extra)  # raises: the admin API reports it
        layer_of = {e.experiment_id: la.name for la in design.layers for e in la.experiments}
        return _Built(state.version, design, tuple(skipped), layer_of)

    def _fold(self, design: Design, entry: AuditEntry) -> Design:
        p = entry.payload
        eid = str(p["experiment_id"])
        if entry.action == "experiment_create":
            if eid == self.holdout_id:
                raise LifecycleError(409, f"experiment id {eid!r} is the holdout's id; choose another")
            known = {e.experiment_id for la in design.layers for e in la.experiments}
            if eid in known:
                raise LifecycleError(409, f"experiment {eid!r} exists already; choose a new id")
            layer = next((la for la in design.layers if la.name == p.get("layer")), None)
            if layer is None:
                raise LifecycleError(404, f"no layer {p.get('layer')!r}; layers: {[la.name for la in design.layers]}")
            spec = LayerExperimentConfig.model_validate({**p["spec"], "experiment_id": eid, "status": "draft"})
            if layer.name == MAIN_LAYER:
                arms = [a.name for a in self.config.arms]
                bad = [a.name for a in spec.arms if a.params.get("backend") not in arms]
                if bad:
                    raise LifecycleError(422, f"arms {bad} of {eid!r}: params.backend must be one of {arms}")
            exp = experiment_of(spec, layer.salt)
            free = layer.free_ranges()
            if not any(lo <= exp.lo and exp.hi <= hi for lo, hi in free):
                raise LifecycleError(409, f"buckets [{exp.lo}, {exp.hi}) of layer {layer.name!r} are not free; "
                                          f"free ranges: {[list(r) for r in free]}")
            try:
                return evolve(design, added=[(layer.name, exp)])
            except ValueError as exc:
                raise LifecycleError(422, str(exc)) from None
        target = {"experiment_start": "running", "experiment_stop": "stopped",
                  "experiment_launch": "launched"}.get(entry.action)
        if target is None:
            raise LifecycleError(422, f"unknown lifecycle action {entry.action!r}")
        try:
            _, exp = design.experiment(eid)
        except KeyError as exc:
            raise LifecycleError(404, str(exc.args[0])) from None
        if target not in TRANSITIONS[exp.status]:
            allowed = TRANSITIONS[exp.status]
            raise LifecycleError(409, f"experiment {eid!r} is {exp.status}; it can go to {list(allowed) or 'nothing'}"
                                      f", not {target}")
        arm = None
        if target == "launched":
            arm = str(p.get("arm"))
            names = [a.name for a in exp.arms]
            if arm not in names:
                raise LifecycleError(422, f"launch arm {arm!r} is not an arm of {eid!r}; expected one of {names}")
        try:
            return evolve(design, status={eid: (target, arm)})  # type: ignore[dict-item]
        except ValueError as exc:
            raise LifecycleError(409, str(exc)) from None

    def check(self, entry: AuditEntry) -> None:
        """Raise ``LifecycleError`` when ``entry`` would not apply to the live design (before it is written)."""
        built = self._current()
        self._fold(built.design, entry)

    def times(self) -> dict[str, dict[str, float]]:
        """Experiment id -> {created_at, started_at, stopped_at, launched_at} from the applied lifecycle entries."""
        skipped = {id(e) for e, _ in self.skipped()}
        out: dict[str, dict[str, float]] = {}
        for entry in self.state.lifecycle:
            if id(entry) in skipped:
                continue
            what = entry.action.removeprefix("experiment_")
            stamp = {"create": "created_at", "start": "started_at", "stop": "stopped_at", "launch": "launched_at"}
            out.setdefault(str(entry.payload["experiment_id"]), {})[stamp[what]] = entry.ts
        return out

    # ------------------------------------------------------------------------------------------------ search
    def route(self, unit_id: str, context: Mapping[str, Any], override: str | None = None) -> Routed:
        """Assign ``unit_id`` in every layer. ``override`` (an admin QA override) forces the backend: the unit's
        main-layer enrollment is replaced by a row in the top-level experiment with that arm, as for a single
        experiment."""
        built = self._current()
        a = built.design.assign(unit_id, context)
        rows = [(e.layer, e.experiment_id, e.arm) for e in a.enrollments
                if override is None or e.layer != MAIN_LAYER]
        backend = str(a.params["backend"])
        if override is not None:
            backend = override
            rows.insert(0, (MAIN_LAYER, self.main_id, override))
        if self.holdout_id is not None:
            rows.append((HOLDOUT_LAYER, self.holdout_id, "holdout" if a.holdout else "rest"))
        k = int(a.params["k"]) if self.layer_owns_k else None
        return Routed(backend, k, tuple(rows), a.holdout)

    def impressions(self, impression: Impression, routed: Routed) -> list[Impression]:
        """The rows of one layered search (``impression`` is the search as logged for a single experiment)."""
        base = impression.impression_id
        return [
            replace(impression, impression_id=row_impression_id(base, eid, self.main_id), experiment_id=eid, arm=arm,
                    context={**impression.context, "layer": layer, "impression": base})
            for layer, eid, arm in routed.rows
        ]

    def clicks(self, claims: ImpressionClaims, click: Click) -> list[Click]:
        """One click row per row of the impression (the token's enrollments)."""
        return [replace(click, impression_id=row_impression_id(claims.impression_id, eid, self.main_id),
                        experiment_id=eid, arm=arm) for eid, arm in claims.enrollments]

    def feedback(self, claims: ImpressionClaims, event: Feedback) -> list[Feedback]:
        """One feedback row per row of the impression."""
        return [replace(event, impression_id=row_impression_id(claims.impression_id, eid, self.main_id),
                        experiment_id=eid, arm=arm) for eid, arm in claims.enrollments]

    @staticmethod
    def enrollments(routed: Routed) -> tuple[tuple[str, str], ...]:
        return tuple((eid, arm) for _, eid, arm in routed.rows)

