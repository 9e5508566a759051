"""The mutable experiment state behind the admin API (allocation, pause, kill switch, overrides), and how it is
rebuilt after a restart from the audit log in the store.

Every admin change is written to the store as an ``AuditEntry`` *before* it is applied, so the audit log is the
durable record of the state. At start-up ``restore_state`` replays it:

- pause, kill switch and overrides are replayed as they were left;
- the allocation is the last admin ``allocation`` entry, unless the config file's weights changed since the last
  start (recorded in a ``serve_start`` entry), in which case the file wins: the newest intent wins;
- a start that would lower a treatment's share (units moving back to control) is refused unless the config sets
  ``allow_ramp_down: true``;
- lifecycle changes of a layered file (``experiment_create/start/stop/launch``, see ``abharness.serve.layered``) are
  replayed in log order, except for an experiment whose status in the file changed since the last start (recorded
  as ``config_statuses`` in ``serve_start``): the edited file is the newer intent, so that experiment's earlier
  admin changes are dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from abharness.config import ExperimentConfig
from abharness.config_layers import is_layered
from abharness.core.assignment import Allocation, allocation, arms_with_decreasing_share
from abharness.core.events import AuditEntry
from abharness.errors import ConfigError

__all__ = ["ExperimentState", "restore_state", "AUDIT_ACTIONS", "LIFECYCLE_ACTIONS"]

LIFECYCLE_ACTIONS = ("experiment_create", "experiment_start", "experiment_stop", "experiment_launch")
AUDIT_ACTIONS = ("serve_start", "allocation", "pause", "resume", "kill", "unkill", "override_set", "override_clear",
                 *LIFECYCLE_ACTIONS)


@dataclass
class ExperimentState:
    """Live routing state (mutated only on the event loop by admin calls)."""

    control: str
    weights: dict[str, float]
    alloc: Allocation
    paused: bool = False
    killed: bool = False
    kill_reason: str = ""
    overrides: dict[str, str] = field(default_factory=dict)
    lifecycle: tuple[AuditEntry, ...] = ()
    """Lifecycle entries of a layered file, in log order (folded onto the file's design by ``serve.layered``)."""
    version: int = 0
    """Bumped by every change, so a cached design knows when to rebuild."""

    @property
    def routing_to_control(self) -> bool:
        """True when every request goes to control (paused or killed)."""
        return self.paused or self.killed

    def set_weights(self, weights: Mapping[str, float]) -> None:
        ordered = {name: float(weights[name]) for name in self.weights}
        self.alloc = allocation(ordered, self.control)
        self.weights = ordered
        self.version += 1

    def apply(self, entry: AuditEntry) -> None:
        """Apply one audit entry (replay and live changes go through the same code)."""
        p = entry.payload
        if entry.action == "allocation":
            self.set_weights(p["weights"])
        elif entry.action == "pause":
            self.paused = True
        elif entry.action == "resume":
            self.paused = False
        elif entry.action == "kill":
            self.killed, self.kill_reason = True, str(p.get("reason", ""))
        elif entry.action == "unkill":
            self.killed, self.kill_reason = False, ""
        elif entry.action == "override_set":
            self.overrides[str(p["unit_id"])] = str(p["arm"])
        elif entry.action == "override_clear":
            self.overrides.pop(str(p["unit_id"]), None)
        elif entry.action in LIFECYCLE_ACTIONS:
            str(p["experiment_id"])  # KeyError for a malformed entry, like the other actions
            self.lifecycle = (*self.lifecycle, entry)  # a new tuple: a trial copy never shares it
        self.version += 1

    def to_dict(self) -> dict[str, object]:
        return {
            "weights": dict(self.weights),
            "paused": self.paused,
            "killed": self.killed,
            "kill_reason": self.kill_reason,
            "overrides": dict(self.overrides),
        }


def restore_state(
    config: ExperimentConfig, audit: Sequence[AuditEntry], *, now: float
) -> tuple[ExperimentState, AuditEntry]:
    """Rebuild the state from the config and the experiment's audit log (oldest first).

    Returns the state and the ``serve_start`` entry to record. Raises ``ConfigError`` for a ramp-down that the
    config does not allow, or for replayed entries that no longer fit the config (unknown arms).
    """
    cfg_weights = config.ordered_weights()
    state = ExperimentState(
        control=config.control,
        weights=dict(cfg_weights),
        alloc=allocation(cfg_weights, config.control),
        overrides=dict(config.overrides),
    )
    last_start_cfg: dict[str, float] | None = None
    admin_weights: dict[str, float] | None = None
    arms = set(cfg_weights)
    layered = is_layered(config)
    statuses = {e.experiment_id: e.status for la in config.design().layers for e in la.experiments}
    last_statuses: dict[str, str] | None = None
    lifecycle_at_last_start = 0
    for entry in audit:
        if entry.action == "serve_start":
            last_start_cfg = {k: float(v) for k, v in entry.payload.get("config_weights", {}).items()}
            admin_weights = {k: float(v) for k, v in entry.payload.get("effective_weights", {}).items()} or None
            last_statuses = entry.payload.get("config_statuses")
            lifecycle_at_last_start = len(state.lifecycle)
            continue
        if entry.action == "allocation":
            admin_weights = {k: float(v) for k, v in entry.payload["weights"].items()}
            continue
        if entry.action == "override_set" and entry.payload.get("arm") not in arms:
            continue  # an arm removed from the config since: the override no longer applies
        state.apply(entry)
    if last_statuses is not None:  # the file's newer intent wins over earlier admin changes of what it edited
        edited = {e for e in {*statuses, *last_statuses} if statuses.get(e) != last_statuses.get(e)}
        state.lifecycle = tuple(entry for i, entry in enumerate(state.lifecycle)
                                if i >= lifecycle_at_last_start or entry.payload.get("experiment_id") not in edited)
    if not layered:
        state.lifecycle = ()  # lifecycle is served for layered files only (a single-experiment file is unchanged)
    previous = admin_weights
    if admin_weights is not None and set(admin_weights) == arms and last_start_cfg == cfg_weights:
        state.set_weights(admin_weights)  # config unchanged since the last start: the admin's ramp stands
    if previous is not None and set(previous) == arms:
        down = arms_with_decreasing_share(previous, state.weights, config.control)
        if down and not config.allow_ramp_down:
            raise ConfigError(
                f"weights: starting with {state.weights} would lower the share of {down} from {previous} and move "
                "units back to control; keep the weights, use a new salt/experiment_id, or set allow_ramp_down: true"
            )
    start = AuditEntry(
        ts=now,
        experiment_id=config.experiment_id,
        actor="abharness serve",
        action="serve_start",
        payload={"config_weights": cfg_weights, "effective_weights": dict(state.weights), "mode": config.mode,
                 **({"config_statuses": statuses} if layered else {})},
    )
    return state, start
