"""Sticky, salted assignment of units to arms. Pure: no clock, no I/O, no global state.

Bucketing
    ``bucket(salt, unit_id)`` hashes ``"<salt>\\x1f<unit_id>"`` with SHA-256 and reduces the first 8 bytes
    (a uniform 64-bit integer) modulo ``BUCKETS`` (10,000). The modulo bias is at most 10,000 / 2**64, which is
    negligible. Because it depends only on (salt, unit id), a unit gets the same bucket in every process, on every
    machine and after every restart; a different salt (one per experiment) gives an independent split.

Allocation layout (why a ramp only moves units from control to treatment)
    With *m* treatment arms the bucket space is cut into *m* equal lanes of ``BUCKETS // m`` buckets. Treatment
    arm *i* (in config order) owns the first ``round(weight_i * BUCKETS)`` buckets of lane *i*; every other bucket
    belongs to control. Raising a treatment's weight therefore only grows its own prefix, taking buckets from
    control; a unit that was in treatment stays there. Consequences: each treatment weight is at most ``1/m``
    (any weight with one treatment), and lowering a weight (a ramp-down) is the only way a unit moves back, which
    the admin API refuses unless asked explicitly.

Overrides
    A per-unit override (for QA) forces an arm regardless of the bucket; it is applied by ``assign`` before
    bucketing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["BUCKETS", "bucket", "Allocation", "allocation", "assign", "arms_with_decreasing_share"]

BUCKETS = 10_000
_WEIGHT_TOLERANCE = 1e-6


def bucket(salt: str, unit_id: str) -> int:
    """The unit's bucket in ``[0, BUCKETS)``, a pure function of (salt, unit id)."""
    digest = hashlib.sha256(f"{salt}\x1f{unit_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


@dataclass(frozen=True, slots=True)
class Allocation:
    """Bucket ranges per arm. ``ranges`` maps a treatment arm to its half-open bucket interval [lo, hi)."""

    control: str
    treatments: tuple[str, ...]
    ranges: tuple[tuple[str, int, int], ...]

    def arm_for_bucket(self, b: int) -> str:
        """The arm that owns bucket ``b``."""
        for name, lo, hi in self.ranges:
            if lo <= b < hi:
                return name
        return self.control

    def share(self, arm: str) -> float:
        """The exact fraction of buckets the arm owns (after rounding weights to whole buckets)."""
        treated = {name: hi - lo for name, lo, hi in self.ranges}
        if arm == self.control:
            return (BUCKETS - sum(treated.values())) / BUCKETS
        return treated.get(arm, 0) / BUCKETS


def allocation(weights: Mapping[str, float], control: str | None = None) -> Allocation:
    """Lay the weights out over the buckets (see the module docstring).

    ``weights`` maps every arm to a weight in [0, 1]; they must sum to 1. ``control`` names the control arm; by
    default the first key of ``weights`` (control-first ordering). Raises ``ValueError`` naming the offending arm.
    """
    if not weights:
        raise ValueError("weights is empty; give a weight for every arm, e.g. {'baseline': 0.9, 'finetuned': 0.1}")
    names = list(weights)
    control = names[0] if control is None else control
    if control not in weights:
        raise ValueError(f"control arm {control!r} has no weight; weights name {names}")
    for name, w in weights.items():
        if not (0.0 <= float(w) <= 1.0):
            raise ValueError(f"weight of arm {name!r} is {w}; expected a number in [0, 1]")
    total = sum(float(w) for w in weights.values())
    if abs(total - 1.0) > _WEIGHT_TOLERANCE:
        raise ValueError(f"weights sum to {total:.6g}; they must sum to 1 (e.g. control 0.9, treatment 0.1)")
    treatments = tuple(n for n in names if n != control)
    if not treatments:
        return Allocation(control=control, treatments=(), ranges=())
    lane = BUCKETS // len(treatments)
    ranges = []
    for i, name in enumerate(treatments):
        size = round(float(weights[name]) * BUCKETS)
        if size > lane:
            raise ValueError(
                f"weight of treatment arm {name!r} is {weights[name]}; with {len(treatments)} treatment arms each "
                f"may take at most {lane / BUCKETS:g} of traffic (one lane of the bucket space)"
            )
        ranges.append((name, i * lane, i * lane + size))
    return Allocation(control=control, treatments=treatments, ranges=tuple(ranges))


def assign(
    salt: str,
    unit_id: str,
    weights: Mapping[str, float] | Allocation,
    *,
    control: str | None = None,
    overrides: Mapping[str, str] | None = None,
) -> str:
    """The arm for ``unit_id``: its override if any, else the owner of its salted bucket.

    ``weights`` may be a precomputed ``Allocation`` (cheaper on a hot path) or a mapping of arm weights, in which
    case ``control`` defaults to its first key.
    """
    if overrides and unit_id in overrides:
        return overrides[unit_id]
    alloc = weights if isinstance(weights, Allocation) else allocation(weights, control)
    return alloc.arm_for_bucket(bucket(salt, unit_id))


def arms_with_decreasing_share(old: Mapping[str, float], new: Mapping[str, float], control: str) -> list[str]:
    """Treatment arms whose weight would *decrease* going from ``old`` to ``new`` (empty list: a pure ramp-up).

    A decrease moves units back from that treatment to control, which breaks stickiness for them.
    """
    return [
        name
        for name in new
        if name != control and float(new[name]) + _WEIGHT_TOLERANCE < float(old.get(name, 0.0))
    ]
