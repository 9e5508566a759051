"""The demo's verdicts (typed rows, pure over the stage results), the report stage, the terminal summary and the
HTML index page."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rich.console import Console
from rich.table import Table

from abharness.demo.stages import Done, StageRecord

if TYPE_CHECKING:
    from abharness.analysis import AnalysisReport
    from abharness.replay.runner import ReplayReport
    from abharness.simulate.driver import SimulationResult
    from abharness.simulate.sensitivity import SensitivityResult

__all__ = ["VerdictRow", "Verdicts", "direction_of_interval", "render_summary", "sensitivity_summary",
           "summary_dict", "verdicts", "write_index", "write_reports"]

WORDS = {1: "finetuned better", -1: "finetuned worse", 0: "no significant difference"}
Method = Literal["offline", "replay", "ab", "interleaving"]


def direction_of_interval(lower: float | None, upper: float | None) -> int:
    """+1 when the interval lies above 0, -1 below, 0 when it covers 0 or is undefined."""
    if lower is None or upper is None or not (math.isfinite(lower) and math.isfinite(upper)):
        return 0
    return 1 if lower > 0 else (-1 if upper < 0 else 0)


@dataclass(frozen=True)
class VerdictRow:
    """One method's answer: ``direction`` +1 (finetuned better), -1 (worse) or 0 (no significant difference),
    the words, the numbers behind them, and the live traffic it used (and needs, for the online methods)."""

    method: Method
    direction: int
    verdict: str
    evidence: str
    traffic: str
    impressions: int
    needed_for_80pct_power: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The row as ``summary.json`` holds it (keyed by method, so without it)."""
        out = asdict(self)
        del out["method"]
        if self.needed_for_80pct_power is None:
            del out["needed_for_80pct_power"]
        return out


@dataclass(frozen=True)
class Verdicts:
    """The four rows (offline, replay, A/B, interleaving) and whether their conclusive verdicts agree."""

    rows: tuple[VerdictRow, ...]
    agreement: str

    def row(self, method: Method) -> VerdictRow:
        return next(r for r in self.rows if r.method == method)


def _first_significant_units(ab: AnalysisReport) -> int | None:
    for p in ab.timeseries:
        if direction_of_interval(p.seq_lower, p.seq_upper) != 0:
            return int(p.units)
    return None


def _offline_row(evaluation: dict[str, Any]) -> VerdictRow:
    ret = evaluation.get("checks", {}).get("retrieval", {})
    prim = next((r for r in ret.get("metrics", []) if r.get("metric") == ret.get("primary_metric")), None)
    d = {"improved": 1, "regressed": -1}.get(str(ret.get("verdict")), 0)
    evidence = (f"{prim['metric']} {prim['baseline']:.4f} -> {prim['candidate']:.4f} "
                f"(delta {prim['delta']:+.4f}, 95% CI [{prim['ci'][0]:+.4f}, {prim['ci'][1]:+.4f}], "
                f"Holm p={prim['p_holm']:.3g})") if prim else str(ret.get("headline", "no retrieval check"))
    return VerdictRow("offline", d, WORDS[d], evidence,
                      f"no live traffic; {ret.get('n_queries', '?')} judged test queries", 0)


def _replay_row(replay: ReplayReport) -> VerdictRow:
    q = replay.qrels.get("ndcg@10")
    c = replay.offline_click.get("mrr")
    d = direction_of_interval(q.ci_low, q.ci_high) if q else 0
    evidence = (f"qrels nDCG@10 delta {q.delta:+.4f} [{q.ci_low:+.4f}, {q.ci_high:+.4f}] on "
                f"{replay.qrels_queries} logged queries" if q else "no qrels")
    evidence += f"; click-label MRR delta {c.delta:+.4f} [{c.lower:+.4f}, {c.upper:+.4f}]" if c else ""
    return VerdictRow("replay", d, WORDS[d], evidence,
                      f"re-ran {replay.impressions:,} logged impressions ({replay.distinct_queries} distinct "
                      "queries); no new traffic", 0)


def _ab_row(ab: AnalysisReport, sim: SimulationResult, needed: int) -> VerdictRow:
    m = ab.metrics.get(ab.primary)
    d = {"ship": 1, "rollback": -1}.get(ab.decision, 0)
    first = _first_significant_units(ab)
    if d == 0 and m is not None and direction_of_interval(m.lift_lower, m.lift_upper) != 0:
        words = "fixed-horizon CI excludes 0, the always-valid interval does not yet"
    else:
        words = WORDS[d]
    evidence = (f"{ab.primary} {m.control.value:.4f} -> {m.treatment.value:.4f} (lift {m.lift:+.4f}, 95% CI "
                f"[{m.lift_lower:+.4f}, {m.lift_upper:+.4f}], p={m.p_value:.3g}, always-valid p="
                f"{m.always_valid_p:.3g})") if m else "no primary metric"
    traffic = (f"used {sim.searches:,} impressions ({sum(ab.units.values()):,} users); needs {needed:,} for 80% "
               "power (simulated)" + (f"; always-valid interval first excluded 0 at {first:,} users" if first else ""))
    return VerdictRow("ab", d, f"{ab.decision} ({words})", evidence, traffic, sim.searches, needed)


def _interleaving_row(report: AnalysisReport, sim: SimulationResult, needed: int) -> VerdictRow:
    il = report.interleaving
    d = direction_of_interval(il.preference_lower, il.preference_upper) if il else 0
    evidence = (f"preference {il.preference:+.4f} [{il.preference_lower:+.4f}, {il.preference_upper:+.4f}], "
                f"p={il.p_value:.3g}; wins finetuned/baseline/ties {il.wins_treatment}/{il.wins_control}/"
                f"{il.ties}") if il else "no interleaved impressions"
    return VerdictRow("interleaving", d, WORDS[d], evidence,
                      f"used {sim.searches:,} impressions; needs {needed:,} for 80% power (simulated)",
                      sim.searches, needed)


def _agreement(rows: tuple[VerdictRow, ...]) -> str:
    conclusive = {r.method: r.direction for r in rows if r.direction != 0}
    if not conclusive:
        return "no method found a significant difference"
    if len(set(conclusive.values())) == 1:
        inconclusive = [r.method for r in rows if r.method not in conclusive]
        return (f"all conclusive verdicts agree ({', '.join(conclusive)}): {WORDS[next(iter(conclusive.values()))]}"
                + (f"; inconclusive: {', '.join(inconclusive)}" if inconclusive else ""))
    return "verdicts DISAGREE: " + ", ".join(f"{k}: {WORDS[d]}" for k, d in conclusive.items())


def verdicts(*, evaluation: dict[str, Any], ab: AnalysisReport, interleave: AnalysisReport, replay: ReplayReport,
             sensitivity: SensitivityResult, sim_ab: SimulationResult, sim_il: SimulationResult) -> Verdicts:
    """One row per method: its verdict, the numbers behind it, and the traffic it needed; then the agreement."""
    rows = (
        _offline_row(evaluation),
        _replay_row(replay),
        _ab_row(ab, sim_ab, sensitivity.primary_ab.impressions_needed),
        _interleaving_row(interleave, sim_il, sensitivity.interleaving.impressions_needed),
    )
    return Verdicts(rows, _agreement(rows))


def sensitivity_summary(sensitivity: SensitivityResult) -> dict[str, Any]:
    """The sensitivity study as ``summary.json`` holds it."""
    return {
        "click_model": sensitivity.click_model, "impressions_per_user": sensitivity.impressions_per_unit,
        "ab_metric": sensitivity.primary_ab_metric, "ab_impressions_needed": sensitivity.primary_ab.impressions_needed,
        "interleaving_impressions_needed": sensitivity.interleaving.impressions_needed, "ratio": sensitivity.ratio,
        "ab_all": [{"metric": p.metric, "effect": p.effect, "impressions_needed": p.impressions_needed,
                    "predicted": p.predicted_impressions, "simulated": p.simulated} for p in sensitivity.ab],
    }


def summary_dict(v: Verdicts, *, sensitivity: SensitivityResult, sim_ab: SimulationResult,
                 sim_il: SimulationResult, replay: ReplayReport, stages: list[StageRecord]) -> dict[str, Any]:
    """Everything ``summary.json`` holds except the run's own facts (wall time, artefact paths)."""
    return {
        "rows": {r.method: r.to_dict() for r in v.rows}, "agreement": v.agreement,
        "sensitivity": sensitivity_summary(sensitivity),
        "simulation": {"ab": sim_ab.to_dict(), "interleaving": sim_il.to_dict()},
        "replay_agreement": [asdict(a) for a in replay.agreement],
        "stages": [asdict(s) for s in stages],
    }


# 9 ---------------------------------------------------------------------------------------------------- report
def write_reports(out: Path, summary: dict[str, Any], *, ab: AnalysisReport, interleave: AnalysisReport,
                  sensitivity: SensitivityResult, evaluation: dict[str, Any], replay: ReplayReport,
                  now: float) -> Done[Path]:
    """Both analyses and the sensitivity study as JSON; the online results pages (same template as `abharness
    analyze --html`): the A/B with the offline evaluation's and the replay's verdicts beside it, and the
    interleaving run; and ``index.html`` linking every report."""
    from abharness.report.results import offline_verdicts, write_results_html

    for name, rpt in (("analysis-ab.json", ab), ("analysis-interleave.json", interleave)):
        (out / name).write_text(json.dumps(rpt.to_dict(), indent=2, default=str), encoding="utf-8")
    (out / "sensitivity.json").write_text(json.dumps(sensitivity.to_dict(), indent=2, default=str), encoding="utf-8")
    offline = offline_verdicts(evaluation=evaluation, replay=replay.to_dict())
    write_results_html(ab.to_dict(), out / "ab", offline=offline, generated_at=now)
    write_results_html(interleave.to_dict(), out / "interleave", generated_at=now)
    return Done(write_index(summary, out))


def render_summary(summary: dict[str, Any], console: Console, out: Path) -> None:
    """The closing terminal summary."""
    t = Table(title="Did fine-tuning help? One verdict per method")
    for h in ("method", "verdict", "evidence", "traffic"):
        t.add_column(h, overflow="fold")
    for name, r in summary["rows"].items():
        t.add_row(name, r["verdict"], r["evidence"], r["traffic"])
    console.print(t)
    s = summary["sensitivity"]
    console.print(
        f"[bold]Sensitivity[/] ({s['click_model']} users, {s['impressions_per_user']} searches each, 80% power, "
        f"alpha 0.05): A/B on {s['ab_metric']} needs {s['ab_impressions_needed']:,} impressions, interleaving "
        f"{s['interleaving_impressions_needed']:,}: ratio {s['ratio']:.1f}x"
    )
    console.print(f"[bold]Agreement:[/] {summary['agreement']}")
    console.print(f"wall time {summary['wall_seconds']:.0f} s; report: {out / 'index.html'}")


def write_index(summary: dict[str, Any], out: Path) -> Path:
    """``index.html`` (template ``demo_index.html.j2``): the verdict table, sensitivity, stage timings, and links
    to every report."""
    from abharness.report.html import fmt
    from abharness.report.templating import write_html

    s = summary["sensitivity"]
    sensitivity = [["A/B", a["metric"], a["effect"], a["predicted"], a["impressions_needed"], a["simulated"]]
                   for a in s["ab_all"]] + [["interleaving", "preference", None, None,
                                             s["interleaving_impressions_needed"], True]]
    items = {"A/B results page": "ab/index.html", "interleaving results page": "interleave/index.html",
             "offline evaluation": "evaluation/report.html", "replay": "replay/replay.html",
             "A/B analysis (JSON)": "analysis-ab.json", "interleaving analysis (JSON)": "analysis-interleave.json",
             "sensitivity (JSON)": "sensitivity.json", "summary (JSON)": "summary.json"}
    return write_html(
        out, "index.html", "demo_index.html.j2", title="abharness demo: did fine-tuning help?",
        subtitle=f"agreement: {summary['agreement']}",
        nav=[("verdicts", "Verdicts"), ("sensitivity", "Interleaving vs A/B sensitivity"), ("stages", "Stages"),
             ("reports", "Reports")],
        verdicts=[[k, r["verdict"], r["evidence"], r["traffic"]] for k, r in summary["rows"].items()],
        sensitivity=[[fmt(c) for c in row] for row in sensitivity], ab_metric=s["ab_metric"], ratio=s["ratio"],
        stages=[[st["name"], fmt(st["seconds"]), fmt(st["reused"]), st["note"]] for st in summary.get("stages", [])],
        reports=list(items.items()),
    )
