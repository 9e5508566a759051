"""Rendering a ``ReplayReport``: rich tables for the terminal, JSON, and the HTML page (``abharness.report.replay``)."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from abharness.replay.runner import ReplayReport

__all__ = ["render_terminal", "write_replay_outputs"]


def _f(x: float | None, digits: int = 4) -> str:
    if x is None or x != x:
        return "—"
    return f"{x:+.{digits}f}" if digits < 0 else f"{x:.{digits}f}"


def _ci(lo: float, hi: float) -> str:
    return f"[{_f(lo)}, {_f(hi)}]"


def render_terminal(report: ReplayReport, console: Console | None = None) -> None:
    """Print the replay summary tables."""
    con = console or Console()
    con.print(
        f"[bold]replay of {report.experiment_id}[/]: {report.impressions} impressions, {report.units} units, "
        f"{report.distinct_queries} distinct queries, modes {dict(report.modes)}; control={report.control}, "
        f"treatment={report.treatment}, k={report.k}"
    )
    if report.new_versions:
        con.print(f"[yellow]replayed against NEW versions of: {', '.join(report.new_versions)}[/]")
    same = ", ".join(f"{a}: {v:.1%}" for a, v in report.identical_lists.items() if v == v)
    if same:
        con.print(f"replayed list identical to the served list: {same}")
    t = Table(title="online metrics recomputed from replayed lists + logged clicks (A/B impressions)")
    for h in ("metric", "control", "treatment", "lift", "95% CI", "online lift", "online 95% CI"):
        t.add_column(h)
    for m, c in report.replayed_online.items():
        on = report.online.get(m)
        t.add_row(m, _f(c.control.value), _f(c.treatment.value), _f(c.lift), _ci(c.lift_lower, c.lift_upper),
                  _f(on.lift) if on else "—", _ci(on.lift_lower, on.lift_upper) if on else "—")
    con.print(t)
    t = Table(title="offline deltas: both arms' replayed lists on every logged impression (clicks as labels)")
    for h in ("metric", "control", "treatment", "delta", "95% CI", "p"):
        t.add_column(h)
    for m, d in report.offline_click.items():
        t.add_row(m, _f(d.control), _f(d.treatment), _f(d.delta), _ci(d.lower, d.upper), _f(d.p_value, 4))
    con.print(t)
    for title, table in (("COEC click judgments", report.coec), (f"qrels ({report.qrels_queries} queries)",
                                                                  report.qrels)):
        if not table:
            continue
        t = Table(title=f"IR metrics per query against {title}")
        for h in ("metric", "control", "treatment", "delta", "95% CI", "p (Holm)", "W/T/L"):
            t.add_column(h)
        for m, c in table.items():
            t.add_row(m, _f(c.baseline), _f(c.candidate), _f(c.delta), _ci(c.ci_low, c.ci_high), _f(c.p_holm),
                      f"{c.wins}/{c.ties}/{c.losses}")
        con.print(t)
    con.print(f"ranking overlap between arms: mean Jaccard@{report.k} {report.overlap_mean_jaccard:.3f}, "
              f"mean RBO(p=0.9) {report.overlap_mean_rbo:.3f}")
    t = Table(title="queries where the arms differ most (lowest RBO)")
    for h in ("query", "impressions", "RBO", f"Jaccard@{report.k}"):
        t.add_column(h)
    for o in report.most_different[:10]:
        t.add_row(o.query[:70], str(o.impressions), _f(o.rbo, 3), _f(o.jaccard, 3))
    con.print(t)
    t = Table(title="offline vs online agreement")
    for h in ("offline", "metric", "offline delta [CI]", "online metric", "online delta [CI]", "sign", "ratio",
              "verdict"):
        t.add_column(h)
    for a in report.agreement:
        t.add_row(a.offline_source, a.offline_metric, f"{_f(a.offline_delta)} {_ci(a.offline_lower, a.offline_upper)}",
                  a.online_metric, f"{_f(a.online_delta)} {_ci(a.online_lower, a.online_upper)}",
                  {True: "same", False: "opposite", None: "—"}[a.sign_agrees], _f(a.magnitude_ratio, 2), a.verdict)
    con.print(t)


def write_replay_outputs(report: ReplayReport, out_dir: Path) -> dict[str, Path]:
    """replay.json and replay.html (the shared page template, drawn from the same dict as the JSON)."""
    from abharness.report.replay import write_replay_html

    out_dir.mkdir(parents=True, exist_ok=True)
    payload = report.to_dict()
    js = out_dir / "replay.json"
    js.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    html = write_replay_html(payload, out_dir, "replay.html")
    return {"json": js, "html": html}
