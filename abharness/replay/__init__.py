"""Offline replay of logged queries through both arms, scored with the online metric code.

``replay(store, experiment_id, backends, control=..., treatment=...) -> ReplayReport`` (see
``abharness.replay.runner``); click judgments in ``abharness.replay.logged``; agreement in
``abharness.replay.agreement``; rendering in ``abharness.replay.render``.
"""

from abharness.replay.agreement import Agreement
from abharness.replay.runner import (
           DEFAULT_IR_METRICS,
           OfflineDelta,
           QueryOverlap,
           ReplayReport,
           check_fingerprints,
           replay,
)

__all__ = ["replay", "ReplayReport", "OfflineDelta", "QueryOverlap", "Agreement", "check_fingerprints",
           "DEFAULT_IR_METRICS"]
