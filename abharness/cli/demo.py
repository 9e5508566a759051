"""``abharness demo``: the whole story in one command (see ``abharness.demo``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

__all__ = ["register"]


def demo_command(
    out: Annotated[Path, typer.Option(help="Output directory for reports, the event log and summary.json.")],
    data_root: Annotated[Optional[Path], typer.Option(
        "--data-root", help="Folder holding the data set folders (scifact/, cranfield/, ...), e.g. ../shared/data. "
                            "Default: $ABHARNESS_DATA, else ../shared/data, else the copies fetched into the user "
                            "cache (`abharness data fetch all`), fetched now if missing.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Tiny slice and short runs (a few minutes; used in CI).")] = False,
    artifacts: Annotated[Optional[Path], typer.Option(
        help="Where models/ and indexes/ are reused or built (default: ./artifacts; with --quick: OUT/artifacts).")] = None,
    click_model: Annotated[str, typer.Option(help="Simulated users: pbm, cascade or dbn.")] = "dbn",
    preset: Annotated[str, typer.Option(help="Click/stop probabilities: navigational, informational, perfect.")] = "navigational",
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print summary.json on stdout (progress goes to stderr).")]
    = False,
) -> None:
    """Fine-tune (or reuse) -> build both indexes -> offline evaluation -> proxy with a 50/50 split -> simulated
    users -> analyze -> replay -> interleaving run -> one HTML report and a terminal summary of whether the
    offline, replay, A/B and interleaving verdicts agree and how much traffic each needed."""
    from abharness.data.public import DEMO_DATASETS, find_data_root
    from abharness.demo import DemoOptions, run_demo

    data_root = find_data_root(data_root, ("scifact",) if quick else DEMO_DATASETS)
    kw = dict(artifacts=artifacts, click_model=click_model, preset=preset, seed=seed)
    opts = DemoOptions.quick_defaults(data_root, out, **kw) if quick else DemoOptions(data=data_root, out=out, **kw)
    summary = run_demo(opts, Console(stderr=json_out))
    if json_out:
        import json

        typer.echo(json.dumps(summary, indent=2, default=str))


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the ``abharness`` command."""
    app.command("demo")(demo_command)
