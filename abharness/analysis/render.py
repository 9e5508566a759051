"""Rich tables for an ``AnalysisReport`` (presentation only: every number comes from the report)."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table

from abharness.analysis.report import AnalysisReport, duration_text
from abharness.analysis.usecase import iso_time
from abharness.core.stats.compare import MetricComparison

__all__ = ["render_report"]

_COLOURS = {"ship": "bold green", "keep-running": "bold yellow", "rollback": "bold red"}


def _num(x: float | None, fmt: str = ".4g") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return format(x, fmt)


def _pct(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:+.2%}"


def _p(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return "<1e-4" if x < 1e-4 else f"{x:.4f}"


def _ci(lo: float, hi: float, fmt=None) -> str:
    f = fmt or (lambda v: _num(v, ".3g"))
    return f"[{f(lo)}, {f(hi)}]"


def _metric_table(title: str, comps: dict[str, MetricComparison], alpha: float) -> list[Table]:
    """Two narrow tables (estimates, then tests) so they fit an 80-column terminal."""
    level = f"{1 - alpha:.0%}"
    est = Table(title=f"{title}: estimates (± SE)", title_justify="left")
    for col in ("metric", "control", "treatment", "lift", f"{level} CI", "rel. lift", f"rel. {level} CI"):
        est.add_column(col, justify="left" if col == "metric" else "right")
    tests = Table(title=f"{title}: tests", title_justify="left")
    for col in ("metric", "p", "p Holm", "p BH", "always-valid p", "conf. sequence", "CUPED"):
        tests.add_column(col, justify="left" if col == "metric" else "right")
    for c in comps.values():
        est.add_row(
            c.metric, f"{_num(c.control.value)} ±{_num(c.control.se, '.2g')}",
            f"{_num(c.treatment.value)} ±{_num(c.treatment.se, '.2g')}", _num(c.lift, "+.3g"),
            _ci(c.lift_lower, c.lift_upper), _pct(c.relative_lift), _ci(c.relative_lower, c.relative_upper, _pct),
        )
        cup = f"-{c.variance_reduction:.1%} var" if c.cuped else "–"
        tests.add_row(c.metric, _p(c.p_value), _p(c.p_holm), _p(c.p_bh), _p(c.always_valid_p),
                      _ci(c.seq_lower, c.seq_upper), cup)
    return [est, tests]


def _render_exclusions(ex: Any, console: Console) -> None:
    """Units, impressions and clicks each bot/outlier rule removed per arm, and SRM before the rules."""
    arms = sorted(ex.units_before)
    table = Table(title="excluded before any statistic (units / impressions / clicks)", title_justify="left")
    table.add_column("rule")
    for a in arms:
        table.add_column(a, justify="right")
    for e in ex.effects:
        table.add_row(e.rule, *(f"{e.units.get(a, 0)} / {e.impressions.get(a, 0):.0f} / {e.clicks.get(a, 0):.0f}"
                                for a in arms))
    table.add_row("units before -> after", *(f"{ex.units_before.get(a, 0)} -> {ex.units_after.get(a, 0)}"
                                             for a in arms))
    console.print(table)
    if ex.srm_before is not None:
        console.print(f"SRM on all units before the rules: p={_p(ex.srm_before.p_value)} "
                      f"({'alarm' if ex.srm_before.alarm else 'ok'}); the decision uses the filtered units",
                      highlight=False)


def render_report(report: AnalysisReport, console: Console) -> None:
    """Print the per-arm tables, SRM, guardrails, power, interleaving, segments, time series and the decision."""
    console.print(f"[bold]experiment[/] {report.experiment_id}   control [bold]{report.control}[/]   "
                  f"treatments {', '.join(report.treatments)}   basis {report.basis}, alpha {report.alpha}")
    if report.since is not None or report.until is not None:
        console.print(f"window {iso_time(report.since) if report.since is not None else 'start'} to "
                      f"{iso_time(report.until) if report.until is not None else 'now'}", highlight=False)
    if report.power and math.isfinite(report.power[0].observed_days):
        console.print(f"data span {duration_text(report.power[0].observed_days * 86_400)} (first to last unit seen)",
                      highlight=False)
    arms = Table(title="arms", title_justify="left")
    for col in ("arm", "units", "impressions"):
        arms.add_column(col, justify="right")
    for a, n in report.units.items():
        arms.add_row(a, str(n), str(report.impressions.get(a, "")))
    console.print(arms)
    if report.srm is not None:
        style = "bold red" if report.srm.alarm else "green"
        console.print(f"[{style}]SRM[/] chi2={_num(report.srm.statistic)} p={_p(report.srm.p_value)}: "
                      f"{report.srm.message}", highlight=False)
    if report.exclusions is not None:
        _render_exclusions(report.exclusions, console)
    if report.layered is not None:
        from abharness.analysis.render_layered import render_layered

        render_layered(report.layered, console, report.alpha)
    for t, comps in report.by_treatment.items():
        for table in _metric_table(f"{t} vs {report.control} (primary {report.primary})", comps, report.alpha):
            console.print(table)
        boot = [c for c in comps.values() if c.bootstrap_se is not None]
        if boot:
            console.print("cluster bootstrap check: " + "; ".join(
                f"{c.metric} SE {_num(c.bootstrap_se, '.3g')} (delta {_num(c.lift_se, '.3g')})" for c in boot),
                highlight=False)
    if report.guardrails:
        g = Table(title="guardrails (non-inferiority)", title_justify="left")
        for col in ("metric", "control", "treatment", "harm", "margin", "upper bound", "p (H0: harm >= margin)",
                    "always-valid bound"):
            g.add_column(col, justify="right")
        for c in report.guardrails.values():
            ni = c.non_inferiority
            if ni is None:
                continue
            rel = ni.margin_kind == "relative"
            fmt = _pct if rel else (lambda v: _num(v, "+.4g"))
            g.add_row(c.metric, _num(c.control.value), _num(c.treatment.value), fmt(ni.harm),
                      (f"{ni.margin:.0%} rel" if rel else _num(ni.margin)), fmt(ni.upper), _p(ni.p_value),
                      fmt(ni.seq_upper))
        console.print(g)
    if report.power:
        pw = Table(title="power so far", title_justify="left")
        for col in ("metric", "arm", "units", "target MDE", "power now", "units needed", "MDE now",
                    "design effect", "units/day", "days still needed"):
            pw.add_column(col, justify="right")
        for p in report.power:
            tgt = _pct(p.target_relative_mde) if math.isfinite(p.target_relative_mde) else _num(p.target_absolute_mde)
            mde_now = _pct(p.mde_relative) if math.isfinite(p.mde_relative) else _num(p.mde_absolute)
            pw.add_row(p.metric, p.treatment, str(p.current_units), tgt, _num(p.power_now, ".0%"),
                       _num(p.required_units, ",.0f"), mde_now, _num(p.design_effect, ".2f"),
                       _num(p.units_per_day, ",.0f") if math.isfinite(p.units_per_day) else "n/a", p.days_text)
        console.print(pw)
    if report.cuped is not None:
        console.print(f"CUPED: {report.cuped.note}", highlight=False)
    if report.interleaving is not None:
        r = report.interleaving
        console.print(
            f"[bold]interleaving[/] {r.treatment} vs {r.control}: units {r.units}, impressions {r.impressions}, "
            f"wins {r.wins_treatment}/{r.wins_control}, ties {r.ties}, no click {r.no_click}; preference "
            f"{_num(r.preference, '+.4f')} [{_num(r.preference_lower, '.4f')}, {_num(r.preference_upper, '.4f')}] "
            f"p={_p(r.p_value)} always-valid p={_p(r.always_valid_p)}; Delta_AB {_num(r.delta_ab, '+.4f')} "
            f"[{_num(r.delta_ab_lower, '.4f')}, {_num(r.delta_ab_upper, '.4f')}]; sign test "
            f"{'p=' + _p(r.sign_test_p) if r.sign_test_p is not None else 'not valid (units repeat)'}",
            highlight=False)
    for seg in report.segments:
        units = ", ".join(f"{a} {n}" for a, n in seg.units.items())
        for table in _metric_table(f"segment {seg.key}={seg.value} ({units} units)", seg.metrics, report.alpha):
            console.print(table)
    if report.timeseries:
        ts = Table(title=f"cumulative lift of {report.primary} over time", title_justify="left")
        for col in ("until (UTC)", "units", "lift", "rel. lift", "CI", "always-valid bounds", "always-valid p"):
            ts.add_column(col, justify="right")
        for p in report.timeseries:
            ts.add_row(iso_time(p.until).replace("T", " "), str(p.units), _num(p.lift, "+.4g"), _pct(p.relative_lift),
                       f"[{_num(p.lower)}, {_num(p.upper)}]", f"[{_num(p.seq_lower)}, {_num(p.seq_upper)}]",
                       _p(p.always_valid_p))
        console.print(ts)
    for d in report.diagnostics:
        console.print(f"[yellow]note:[/] {d}", highlight=False)
    style = _COLOURS.get(report.decision, "bold")
    console.print(f"[{style}]decision: {report.decision}[/] (exit {report.exit_code})")
    for r in report.reasons:
        console.print(f"  - {r}", highlight=False)
