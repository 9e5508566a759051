"""Terminal summary: one verdict line per check."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text

__all__ = ["print_summary", "summary_lines"]

_STYLE = {"improved": "green", "pass": "green", "regressed": "red", "fail": "bold red", "warn": "yellow",
          "mixed": "yellow", "no-change": "white", "info": "cyan", "skipped": "dim"}


def summary_lines(payload: dict[str, Any]) -> list[str]:
    """``"<check>  <VERDICT>  <headline>"`` for each check, in report order."""
    return [f"{name:<15}{c['verdict'].upper():<11}{c['headline']}" for name, c in payload["checks"].items()]


def print_summary(payload: dict[str, Any], console: Console, *, out_dir: str | None = None) -> None:
    """Print the models, one ``check  VERDICT  headline`` line per check, the total time and a FAILED banner."""
    console.print(Text(f"{payload['baseline']['name']} (baseline) vs {payload['candidate']['name']} (candidate)",
                       style="bold"))
    if payload.get("limit"):
        console.print(Text(f"SLICE: evaluated with --limit {payload['limit']} (not the full data sets; "
                           "do not compare with full runs)", style="bold yellow"))
    for name, c in payload["checks"].items():
        line = Text(f"{name:<15}")
        line.append(f"{c['verdict'].upper():<11}", style=_STYLE.get(c["verdict"], "white"))
        line.append(c["headline"])
        console.print(line, soft_wrap=True)
    console.print(f"total {payload['timings'].get('total', 0):.1f}s" + (f" · report in {out_dir}" if out_dir else ""))
    if payload["failed"]:
        console.print(Text("FAILED: a check failed (see the FAIL line above)", style="bold red"))
