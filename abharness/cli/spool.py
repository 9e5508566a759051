"""``abharness spool status|load``: the events the proxy spilled or quarantined while its store failed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["register"]

SpoolDir = Annotated[Path, typer.Option("--spool-dir", help="The proxy's events.spool_dir.")]


def status_command(
    spool_dir: SpoolDir = Path("abharness-spool"),
    json_out: Annotated[bool, typer.Option("--json", help="Print what was done as JSON on stdout.")] = False,
) -> None:
    """List the spool and quarantine files not loaded yet, with their event counts."""
    from abharness.stores.spool import Spool

    spool = Spool(spool_dir)
    files = []
    for quarantine in (False, True):
        for path in spool.files(quarantine=quarantine):
            with path.open("rb") as f:
                n = sum(1 for line in f if line.strip())
            files.append({"kind": "quarantine" if quarantine else "spool", "events": n, "path": str(path)})
    if json_out:
        typer.echo(json.dumps({"pending": spool.pending(), "files": files}, indent=2))
        return
    out = Console(soft_wrap=True)
    for f in files:
        out.print(f"{f['kind']:<10} {f['events']:>8} events  {f['path']}")
    out.print(f"{spool.pending()} spooled events waiting to be loaded")


def load_command(
    store: Annotated[str, typer.Option("--store", help="Store URL to load into (the proxy's store_url).")],
    spool_dir: SpoolDir = Path("abharness-spool"),
    quarantine: Annotated[bool, typer.Option(
        help="Load the quarantined (refused) events instead of the spool, after fixing what made them fail.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print what was done as JSON on stdout.")] = False,
) -> None:
    """Write the spooled events back into the store once it is healthy. Safe to run twice: duplicates are ignored."""
    from abharness.stores import open_store
    from abharness.stores.spool import load_spool

    the_store = open_store(store)
    try:
        result = load_spool(the_store, spool_dir, quarantine=quarantine)
    finally:
        the_store.close()
    if json_out:
        typer.echo(json.dumps(dataclasses.asdict(result), indent=2))
        return
    Console(soft_wrap=True).print(
        f"[green]loaded[/] {result.files} file(s): {result.events} events, {result.stored} newly stored, "
        f"{result.duplicates} already present, {result.unreadable} unreadable line(s) skipped"
    )


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Load back events spooled while the event store was down.", no_args_is_help=True)
    group.command("status")(status_command)
    group.command("load")(load_command)
    app.add_typer(group, name="spool")
