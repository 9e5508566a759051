"""``abharness data check|fetch``: validate a data set, or fetch a public BEIR set into the user cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from abharness.errors import ConfigError

__all__ = ["register"]

KINDS = ("beir", "stsb", "sick", "trec")


def check_command(
    data: Annotated[Path, typer.Option(help="Data directory to validate.")],
    kind: Annotated[str, typer.Option(help=f"Layout: {', '.join(KINDS)}.")] = "beir",
    split: Annotated[list[str] | None, typer.Option(help="Split(s) to check (default: all present).")] = None,
    allow_empty_docs: Annotated[bool, typer.Option(help="Accept documents with empty title and text.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the counts per split as JSON on stdout.")] = False,
) -> None:
    """Load and validate DATA; print counts per split, or one red line naming the file and line at fault."""
    from abharness import data as d

    rows: list[dict[str, object]] = []
    if kind == "beir":
        for name in split or d.available_splits(data) or ["test"]:
            ds = d.load_beir(data, name, empty_docs="keep" if allow_empty_docs else "error")
            empty = ds.meta.get("empty_docs", "")
            rows.append({"split": name, "documents": len(ds.corpus), "queries": len(ds.queries),
                         "judgements": sum(map(len, ds.qrels.values())),
                         "empty_docs": len(empty.split(",")) if empty else 0})
    elif kind in {"stsb", "sick", "trec"}:
        loader, default = {"stsb": (d.load_stsb, ["train", "dev", "test"]),
                           "sick": (d.load_sick, ["train", "trial", "test"]),
                           "trec": (d.load_trec, ["train", "test"])}[kind]
        rows = [{"split": name, "items": len(loader(data, name))} for name in split or default]
    else:
        raise ConfigError(f"--kind {kind!r}: not a known layout; valid kinds: {', '.join(KINDS)}")
    if json_out:
        typer.echo(json.dumps({"data": str(data), "kind": kind, "ok": True, "splits": rows}, indent=2))
        return
    table = Table(title=f"{data} ({kind})")
    for col in rows[0] if rows else ["split"]:
        table.add_column(col.replace("_", " "), justify="left" if col == "split" else "right")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    Console().print(table)
    Console().print("[green]ok[/]")


def fetch_command(
    name: Annotated[str, typer.Argument(help="Public BEIR data set name (e.g. scifact, nfcorpus, fiqa).")],
    cache_dir: Annotated[Path | None, typer.Option(help="Where to keep data sets (default: user cache dir).")] = None,
) -> None:
    """Download NAME (checksum verified) into the cache, or reuse it; prints the directory to pass as --data."""
    from abharness.data import resolve_data

    typer.echo(str(resolve_data(name, cache_dir=cache_dir)))


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Validate and fetch data sets.", no_args_is_help=True)
    group.command("check")(check_command)
    group.command("fetch")(fetch_command)
    app.add_typer(group, name="data")
