"""Admin API under ``/admin`` with ``Authorization: Bearer <token>``: ``admin_token`` (actor ``admin``) or one of
the named ``admin_tokens``. The audit log records the name of the token used as the actor.

Every change is written to the store as an ``AuditEntry`` before it takes effect (see ``abharness.serve.state``).

    GET  /admin/experiment            config summary + live state
    GET  /admin/allocation            current weights
    PUT  /admin/allocation            {weights, allow_decrease?}  ramp (decreases refused by default)
    POST /admin/pause | /admin/resume all traffic to control / back to the allocation
    POST /admin/kill                  {reason}  kill switch: control only, treatment never called
    DELETE /admin/kill                lift the kill switch
    GET  /admin/overrides             unit -> arm
    PUT  /admin/overrides/{unit_id}   {arm}
    DELETE /admin/overrides/{unit_id}
    GET  /admin/audit                 the audit log, oldest first
"""

from __future__ import annotations

import hmac
from dataclasses import asdict
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Header, Request

from abharness.api.routes import RequestError, Service
from abharness.api.schemas import AllocationRequest, KillRequest, OverrideRequest, error_responses
from abharness.core.assignment import allocation, arms_with_decreasing_share
from abharness.serve.service import ProxyService

__all__ = ["admin_router"]


def require_admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """Check the bearer token against every configured admin token (constant time); return its actor name."""
    actors: dict[bytes, str] = request.app.state.admin_actors
    if not actors:
        raise RequestError(403, "admin_disabled", "the admin API is disabled: no admin_token is configured")
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise RequestError(401, "unauthorized", "admin endpoints need the header 'Authorization: Bearer <admin_token>'")
    given = token.strip().encode("utf-8")
    found = None
    for expected, name in actors.items():  # compare with every token so the time does not tell which matched
        if hmac.compare_digest(given, expected):
            found = name
    if found is None:
        raise RequestError(403, "forbidden", "the admin token is not valid")
    return found


Actor = Annotated[str, Depends(require_admin)]

admin_router = APIRouter(
    prefix="/admin", dependencies=[Depends(require_admin)], responses=error_responses(400, 401, 403, 422, 503)
)


def _state(service: ProxyService) -> dict[str, Any]:
    return {
        "experiment_id": service.config.experiment_id,
        "mode": service.config.mode,
        "control": service.config.control,
        "arms": [a.name for a in service.config.arms],
        **service.state.to_dict(),
    }


@admin_router.get("/experiment")
async def experiment(service: Service) -> dict[str, Any]:
    """The experiment's configuration summary and live state."""
    return _state(service)


@admin_router.get("/allocation")
async def get_allocation(service: Service) -> dict[str, Any]:
    """Current weights (and whether traffic is paused or killed)."""
    return {"weights": service.state.weights, "paused": service.state.paused, "killed": service.state.killed}


@admin_router.put("/allocation", responses=error_responses(409, 413, 422))
async def put_allocation(body: AllocationRequest, service: Service, actor: Actor) -> dict[str, Any]:
    """Change the weights (a ramp). Lowering a treatment needs ``allow_decrease: true``."""
    arms = set(service.state.weights)
    if set(body.weights) != arms:
        raise RequestError(422, "invalid_weights", f"weights must name exactly the arms {sorted(arms)}")
    try:  # invalid weights are a 422 whatever the ramp direction (validated before the ramp rule)
        allocation({name: body.weights[name] for name in service.state.weights}, service.config.control)
    except ValueError as exc:
        raise RequestError(422, "invalid_weights", f"weights: {exc}") from None
    down = arms_with_decreasing_share(service.state.weights, body.weights, service.config.control)
    if down and not body.allow_decrease:
        raise RequestError(
            409,
            "ramp_down",
            f"lowering {down} would move units back from treatment to control; send allow_decrease: true to do it",
        )
    try:
        await service.admin_change("allocation", actor, {"weights": body.weights})
    except ValueError as exc:
        raise RequestError(422, "invalid_weights", f"weights: {exc}") from None
    return _state(service)


@admin_router.post("/pause")
async def pause(service: Service, actor: Actor) -> dict[str, Any]:
    """Send all traffic to control until /admin/resume."""
    await service.admin_change("pause", actor, {})
    return _state(service)


@admin_router.post("/resume")
async def resume(service: Service, actor: Actor) -> dict[str, Any]:
    """Back to the allocation after a pause."""
    await service.admin_change("resume", actor, {})
    return _state(service)


@admin_router.post("/kill", responses=error_responses(413, 422))
async def kill(body: KillRequest, service: Service, actor: Actor) -> dict[str, Any]:
    """Kill switch: control only, treatment backends are no longer called; stays on until DELETE /admin/kill."""
    await service.admin_change("kill", actor, {"reason": body.reason})
    return _state(service)


@admin_router.delete("/kill")
async def unkill(service: Service, actor: Actor) -> dict[str, Any]:
    """Lift the kill switch."""
    await service.admin_change("unkill", actor, {})
    return _state(service)


@admin_router.get("/overrides")
async def overrides(service: Service) -> dict[str, str]:
    """Per-unit forced arms (QA)."""
    return dict(service.state.overrides)


@admin_router.put("/overrides/{unit_id}", responses=error_responses(413, 422))
async def set_override(unit_id: str, body: OverrideRequest, service: Service, actor: Actor) -> dict[str, Any]:
    """Force ``unit_id`` into ``arm``."""
    if body.arm not in service.state.weights:
        raise RequestError(422, "unknown_arm", f"arm {body.arm!r} is not one of {list(service.state.weights)}")
    await service.admin_change("override_set", actor, {"unit_id": unit_id, "arm": body.arm})
    return _state(service)


@admin_router.delete("/overrides/{unit_id}", responses=error_responses(404, 422))
async def clear_override(unit_id: str, service: Service, actor: Actor) -> dict[str, Any]:
    """Remove the override of ``unit_id``."""
    if unit_id not in service.state.overrides:
        raise RequestError(404, "no_override", f"unit {unit_id!r} has no override")
    await service.admin_change("override_clear", actor, {"unit_id": unit_id})
    return _state(service)


@admin_router.get("/audit")
async def audit(service: Service) -> list[dict[str, Any]]:
    """The audit log of this experiment, oldest first."""
    entries = await anyio.to_thread.run_sync(service.store.audit_log, service.config.experiment_id)
    return [asdict(e) for e in entries]
