"""Terminal rendering of the layered section of an ``AnalysisReport`` (presentation only)."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["render_layered"]


def _f(x: float, fmt: str) -> str:
    return "–" if x is None or not math.isfinite(x) else format(x, fmt)


def _p(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return "<1e-4" if x < 1e-4 else f"{x:.4f}"


def render_layered(summary: Any, console: Console, alpha: float) -> None:
    """The experiment's layer (or the holdout's meaning) and the interaction table with its notes."""
    exp = summary.experiment
    if exp.get("holdout"):
        console.print(f"[bold]holdout[/] {exp['experiment_id']}: {exp['label']} (expected shares "
                      f"{exp['weights']})", highlight=False)
    else:
        where = f"layer {exp['layer']!r}" + (f", targeting {exp['targeting']}" if exp.get("targeting") else "")
        console.print(f"[bold]layered[/] {where}; weights {exp['weights']} within its enrolled population "
                      f"(SRM is computed there)", highlight=False)
    if summary.interactions:
        level = f"{1 - alpha:.0%}"
        t = Table(title=f"interaction diagnostic (does this experiment's effect differ by another layer's arm?)",
                  title_justify="left")
        for col in ("other experiment", "its arms", "effect here | its control", "| its treatment", "difference",
                    f"{level} CI", "p", "p Holm", "alarm"):
            t.add_column(col, justify="left" if col in ("other experiment", "its arms") else "right")
        for r in summary.interactions:
            c = r.check
            t.add_row(f"{r.experiment_a} ({r.layer_a})", f"{r.a_treatment} vs {r.a_control}",
                      _f(c.effect_b_in_a_control, "+.4g"), _f(c.effect_b_in_a_treatment, "+.4g"),
                      _f(c.interaction, "+.4g"), f"[{_f(c.lower, '.3g')}, {_f(c.upper, '.3g')}]", _p(c.p_value),
                      _p(r.p_holm), "[bold red]ALARM[/]" if c.alarm else "no")
        console.print(t)
    for n in summary.notes:
        console.print(f"[yellow]note:[/] {n}", highlight=False)
