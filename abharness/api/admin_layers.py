"""Lifecycle of the experiments of a layered file, under ``/admin`` (same bearer tokens as ``abharness.api.admin``).

    GET  /admin/layers                               layers, their free buckets, experiments with status and times
    POST /admin/layers/{layer}/experiments           {experiment_id, buckets, arms, weights, targeting?, salt?}
                                                     a draft experiment in the layer's free buckets
    POST /admin/experiments/{experiment_id}/start    draft -> running
    POST /admin/experiments/{experiment_id}/stop     running -> stopped (its units fall back to the defaults)
    POST /admin/experiments/{experiment_id}/launch   {arm}  running|stopped -> launched (the arm ships to all but
                                                     the holdout; its buckets become free)

Each change is checked against the live design, then written to the audit log (under the proxy's top-level
experiment id, with the time) before it applies; other replicas apply it at their next audit-log read
(``abharness.serve.layered``). A single-experiment file answers 409: its lifecycle is the file.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from abharness.api.admin import Actor, require_admin
from abharness.api.routes import RequestError, Service
from abharness.api.schemas import error_responses
from abharness.config_layers import LayerExperimentConfig
from abharness.core.events import AuditEntry
from abharness.serve.layered import LayeredRouter, LifecycleError
from abharness.serve.service import ProxyService

__all__ = ["lifecycle_router"]

lifecycle_router = APIRouter(
    prefix="/admin", dependencies=[Depends(require_admin)],
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 503),
)


class LaunchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    arm: str = Field(min_length=1, description="the arm shipped to every unit outside the holdout")


def _router(service: ProxyService) -> LayeredRouter:
    if service.layered is None:
        raise RequestError(409, "not_layered", "this proxy serves a single experiment: its lifecycle is the file; "
                                               "add layers:, holdout: or buckets to manage experiments here")
    return service.layered


def _view(service: ProxyService) -> dict[str, Any]:
    router = _router(service)
    design, times = router.design(), router.times()
    layers = []
    for la in design.layers:
        exps = [{
            "experiment_id": e.experiment_id, "buckets": [e.lo, e.hi], "status": e.status,
            "launched_arm": e.launched_arm, "arms": [{"name": a.name, "role": a.role, "params": dict(a.params)}
                                                     for a in e.arms],
            "weights": dict(e.weights),
            "targeting": {c.key: sorted(c.values) for c in e.targeting},
            **times.get(e.experiment_id, {}),
        } for e in la.experiments]
        layers.append({"name": la.name, "owns": sorted(la.owns), "free": [list(r) for r in la.free_ranges()],
                       "experiments": exps})
    holdout = service.config.holdout
    return {
        "layers": layers,
        "holdout": {"id": holdout.id, "share": holdout.share} if holdout is not None else None,
        "skipped": [{"action": e.action, "ts": e.ts, "payload": e.payload, "reason": why}
                    for e, why in router.skipped()],
    }


async def _change(service: ProxyService, actor: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    router = _router(service)
    async with router.lock:  # check and write as one step, so two calls cannot both take the same free buckets
        entry = AuditEntry(ts=service.now(), experiment_id=service.config.experiment_id, actor=actor, action=action,
                           payload=payload)
        try:
            router.check(entry)
        except LifecycleError as exc:
            code = {404: "unknown_experiment", 409: "conflict"}.get(exc.status, "invalid_experiment")
            raise RequestError(exc.status, code, str(exc)) from None
        except ValueError as exc:
            raise RequestError(422, "invalid_experiment", str(exc)) from None
        await service.admin_change(action, actor, payload)
    return _view(service)


@lifecycle_router.get("/layers")
async def layers(service: Service) -> dict[str, Any]:
    """The live layered design: layers, free buckets, experiments with status and lifecycle times."""
    return _view(service)


@lifecycle_router.post("/layers/{layer}/experiments", status_code=201)
async def create(layer: str, body: LayerExperimentConfig, service: Service, actor: Actor) -> dict[str, Any]:
    """Create a draft experiment in free buckets of ``layer`` (start it with .../start)."""
    if ("status" in body.model_fields_set and body.status != "draft") or body.launched_arm is not None:
        raise RequestError(422, "invalid_experiment", "a new experiment starts as a draft: drop status and "
                                                      "launched_arm, then POST /admin/experiments/{id}/start")
    spec = body.model_dump(mode="json", exclude={"experiment_id", "status", "launched_arm"}, exclude_none=True)
    return await _change(service, actor, "experiment_create",
                         {"experiment_id": body.experiment_id, "layer": layer, "spec": spec})


@lifecycle_router.post("/experiments/{experiment_id}/start")
async def start(experiment_id: str, service: Service, actor: Actor) -> dict[str, Any]:
    """draft -> running: units in its buckets (and targeting) are assigned from now on."""
    return await _change(service, actor, "experiment_start", {"experiment_id": experiment_id})


@lifecycle_router.post("/experiments/{experiment_id}/stop")
async def stop(experiment_id: str, service: Service, actor: Actor) -> dict[str, Any]:
    """running -> stopped: its units see the layer's defaults (control) and log no row in it."""
    return await _change(service, actor, "experiment_stop", {"experiment_id": experiment_id})


@lifecycle_router.post("/experiments/{experiment_id}/launch")
async def launch(experiment_id: str, body: LaunchRequest, service: Service, actor: Actor) -> dict[str, Any]:
    """running or stopped -> launched: ``arm``'s parameters become everyone's but the holdout's."""
    return await _change(service, actor, "experiment_launch", {"experiment_id": experiment_id, "arm": body.arm})
