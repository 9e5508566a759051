"""Terminal summary: one verdict line per check."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["print_summary", "summary_lines"]

_STYLE = {"improved": "green", "pass": "green", "regressed": "red", "fail": "bold red", "warn": "yellow",
          "mixed": "yellow", "no-change": "white", "info": "cyan", "skipped": "dim"}


def summary_lines(payload: dict[str, Any]) -> list[str]:
    """``"<check>  <VERDICT>  <headline>"`` for each check, in report order."""
    return [f"{name:<15}{c['verdict'].upper():<11}{c['headline']}" for name, c in payload["checks"].items()]


def print_summary(payload: dict[str, Any], console: Console, *, out_dir: str | None = None) -> None:
    table = Table(title=f"{payload['baseline']['name']} (baseline) vs {payload['candidate']['name']} (candidate)",
                  show_lines=False, expand=True)
    table.add_column("check", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("finding")
    for name, c in payload["checks"].items():
        style = _STYLE.get(c["verdict"], "white")
        table.add_row(name, Text(c["verdict"].upper(), style=style), Text(c["headline"]))
    console.print(table)
    console.print(f"total {payload['timings'].get('total', 0):.1f}s" + (f" · report in {out_dir}" if out_dir else ""))
    if payload["failed"]:
        console.print("[bold red]FAILED:[/] a check failed (see the FAIL lines above)")
