"""``abharness ubi export|import``: OpenSearch User Behavior Insights JSON lines out of and into an event store."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

__all__ = ["register"]

Store = Annotated[str, typer.Option("--store", help="Event store URL, e.g. sqlite:///events.db")]


def export_command(
    store: Store,
    experiment: Annotated[str, typer.Option(help="Experiment id to export.")],
    out: Annotated[Path, typer.Option(help="Directory for ubi_queries.jsonl and ubi_events.jsonl.")] = Path("ubi"),
    json_out: Annotated[bool, typer.Option("--json", help="Print what was done as JSON on stdout.")] = False,
) -> None:
    """Write the experiment's searches (ubi_queries) and clicks, results seen and dwell times (ubi_events)."""
    from abharness.library import open_store
    from abharness.stores.ubi import export_ubi

    st = open_store(store)  # read-only: a mistyped --store is an error, not a new empty database
    out.mkdir(parents=True, exist_ok=True)
    try:
        with (out / "ubi_queries.jsonl").open("w", encoding="utf-8") as q, \
                (out / "ubi_events.jsonl").open("w", encoding="utf-8") as e:
            counts = export_ubi(st, experiment, q, e)
    finally:
        st.close()
    if json_out:
        typer.echo(json.dumps({"out": str(out), **dataclasses.asdict(counts)}, indent=2))
        return
    Console(soft_wrap=True).print(f"wrote {counts.queries} queries to {out / 'ubi_queries.jsonl'} and "
                                  f"{counts.clicks} clicks, {counts.seen} seen, {counts.dwell} dwell events to "
                                  f"{out / 'ubi_events.jsonl'}", highlight=False)


def import_command(
    store: Store,
    queries: Annotated[Path, typer.Option(help="ubi_queries JSON lines.")],
    events: Annotated[Optional[Path], typer.Option(help="ubi_events JSON lines.")] = None,
    experiment: Annotated[Optional[str], typer.Option(help="Experiment id to store them under (default: from "
                                                           "query_attributes).")] = None,
    arm_attribute: Annotated[str, typer.Option(help="query_attributes key naming the arm.")] = "arm",
    unit_field: Annotated[str, typer.Option(help="Query field used as the unit: client_id, user_id or "
                                                 "session_id.")] = "client_id",
    json_out: Annotated[bool, typer.Option("--json", help="Print what was done as JSON on stdout.")] = False,
) -> None:
    """Store UBI queries as impressions and their click / impression / dwell events, for analyze and replay."""
    from abharness.stores import open_store
    from abharness.stores.ubi import import_ubi

    st = open_store(store)
    try:
        counts = import_ubi(st, queries, events, experiment_id=experiment, arm_attribute=arm_attribute,
                            unit_field=unit_field)
    finally:
        st.close()
    if json_out:
        typer.echo(json.dumps(dataclasses.asdict(counts), indent=2))
        return
    skipped = "; ".join(f"{n} {why}" for why, n in counts.skipped.items()) or "none"
    Console(soft_wrap=True).print(f"imported {counts.queries} queries, {counts.clicks} clicks, {counts.seen} seen, "
                                  f"{counts.dwell} dwell events; skipped: {skipped}", highlight=False)


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="OpenSearch User Behavior Insights (UBI) export and import.", no_args_is_help=True)
    group.command("export")(export_command)
    group.command("import")(import_command)
    app.add_typer(group, name="ubi")
