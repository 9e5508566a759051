"""``abharness export``: an experiment's events as Parquet, partitioned by experiment and UTC date."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

__all__ = ["register"]


def export_command(
    store: Annotated[str, typer.Option(help="Event store URL to read, e.g. sqlite:///events.db or postgresql://...")],
    experiment: Annotated[str, typer.Option(help="Experiment id to export.")],
    out: Annotated[Path, typer.Option(help="Directory of the Parquet dataset (created; other experiments in it are "
                                           "kept, this one's partitions are replaced).")],
    since: Annotated[Optional[str], typer.Option(help="Only impressions at or after this time (unix s or ISO).")] = None,
    until: Annotated[Optional[str], typer.Option(help="Only impressions before this time (unix s or ISO).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the rows written per table as JSON.")] = False,
) -> None:
    """Write the experiment's impressions, clicks, feedback and audit log as Parquet files
    (DIR/TABLE/experiment=ID/date=YYYY-MM-DD/part-N.parquet). Read them back with --store parquet:///DIR in
    analyze and replay (DuckDB runs the same aggregation SQL as the database stores)."""
    from abharness.cli.analyze import parse_time
    from abharness.errors import AnalysisError
    from abharness.library import open_store
    from abharness.stores.parquet_export import export_experiment

    lo, hi = parse_time(since, "--since"), parse_time(until, "--until")
    st = open_store(store)
    try:
        if experiment not in st.experiments():
            known = ", ".join(st.experiments()) or "none"
            raise AnalysisError(f"experiment {experiment!r} has no impressions in {st.url}; known: {known}")
        total = st.counts(experiment)["impressions"]
        with Progress(TextColumn("export"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=Console(stderr=True), transient=True, disable=json_out) as bar:
            task = bar.add_task("export", total=total)
            rows = export_experiment(st, experiment, out, since=lo, until=hi,
                                     progress=lambda n: bar.advance(task, n))
    finally:
        st.close()
    if json_out:
        typer.echo(json.dumps({"out": str(out), "experiment": experiment, "rows": rows}, indent=2))
        return
    summary = ", ".join(f"{n} {t}" for t, n in rows.items())
    Console(soft_wrap=True).print(f"wrote {summary} to {out} (read with --store parquet:///{out})")


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
