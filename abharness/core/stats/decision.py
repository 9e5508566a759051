"""The rollout decision: ship, keep-running or rollback, with the reasons."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from abharness.core.stats.compare import MetricComparison

__all__ = ["Decision", "DecisionName", "decide", "EXIT_CODES"]

DecisionName = Literal["ship", "keep-running", "rollback"]

#: exit codes of ``abharness analyze`` so a rollout pipeline can gate on them (2 = usage or data error).
EXIT_CODES: dict[str, int] = {"ship": 0, "keep-running": 10, "rollback": 20}


@dataclass(frozen=True, slots=True)
class Decision:
    """One decision and the reasons, most important first."""

    decision: DecisionName
    reasons: tuple[str, ...]

    @property
    def exit_code(self) -> int:
        """Exit code for the CLI (ship 0, keep-running 10, rollback 20)."""
        return EXIT_CODES[self.decision]


def _guardrail_state(g: MetricComparison, basis: str) -> str:
    ni = g.non_inferiority
    if ni is None:
        return "inconclusive"
    if basis == "sequential":
        upper, lower = ni.seq_upper, ni.seq_lower
    else:
        upper, lower = ni.upper, 2 * ni.harm - ni.upper  # one-sided bounds, symmetric around harm
    if lower > ni.margin:
        return "fail"
    if upper < ni.margin:
        return "pass"
    return "inconclusive"


def decide(
    *,
    srm_alarm: bool,
    srm_message: str,
    primary: Sequence[MetricComparison],
    guardrails: Sequence[MetricComparison],
    basis: Literal["sequential", "fixed"] = "sequential",
) -> Decision:
    """Rule (documented in docs/analysis.md), evaluated for every treatment arm's primary metric:

    1. rollback if the primary metric is significantly worse, or a guardrail's harm is significantly above its
       margin (evidence of harm: rolling back is the safe action even when the split itself is suspect);
    2. otherwise keep-running if the SRM check alarms (a broken split blocks ship);
    3. ship if every treatment's primary metric is significantly better and every guardrail passes its
       non-inferiority test;
    4. keep-running otherwise.
    "Significantly" uses the always-valid confidence sequence (``basis="sequential"``, safe under continuous
    monitoring) or the fixed-horizon interval (``basis="fixed"``, only valid when looked at once, at the planned
    sample size).
    """
    seq = basis == "sequential"
    reasons: list[str] = []
    harm = False
    for p in primary:
        worse = p.seq_harmed if seq else p.harmed
        if worse:
            harm = True
            reasons.append(f"{p.treatment.arm}: primary metric {p.metric} is significantly worse "
                           f"({p.relative_lift:+.2%})")
    states = {}
    for g in guardrails:
        st = _guardrail_state(g, basis)
        states[(g.treatment.arm, g.metric)] = st
        if st == "fail":
            harm = True
            ni = g.non_inferiority
            reasons.append(f"{g.treatment.arm}: guardrail {g.metric} exceeds its margin "
                           f"(harm {ni.harm:+.4g} > margin {ni.margin:g} {ni.margin_kind})")
    if harm:
        return Decision("rollback", tuple(reasons))
    if srm_alarm:
        return Decision("keep-running", (srm_message, "ship is blocked until the sample-ratio mismatch is explained"))
    if not primary:
        return Decision("keep-running", ("no primary metric could be computed",))
    better = [p.seq_improved if seq else p.improved for p in primary]
    pending = [f"{a}:{m}" for (a, m), st in states.items() if st != "pass"]
    if all(better) and not pending:
        return Decision("ship", tuple(f"{p.treatment.arm}: {p.metric} significantly better ({p.relative_lift:+.2%}, "
                                      f"{'always-valid' if seq else 'fixed-horizon'} interval excludes 0) and all "
                                      "guardrails non-inferior" for p in primary))
    for p, b in zip(primary, better):
        if not b:
            reasons.append(f"{p.treatment.arm}: {p.metric} not yet significant "
                           f"({p.relative_lift:+.2%}, always-valid p={p.always_valid_p:.3g})")
    if pending:
        reasons.append("guardrails not yet shown non-inferior: " + ", ".join(pending))
    return Decision("keep-running", tuple(reasons))
