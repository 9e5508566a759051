"""``abharness data check|fetch``: validate a data set, or fetch a public BEIR set into the user cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from abharness.errors import AbharnessError, ConfigError

__all__ = ["register"]

EXIT_USAGE_ERROR = 2
KINDS = ("beir", "stsb", "sick", "trec")


def _fail(exc: AbharnessError) -> typer.Exit:
    Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
    return typer.Exit(EXIT_USAGE_ERROR)


def check_command(
    data: Annotated[Path, typer.Option(help="Data directory to validate.")],
    kind: Annotated[str, typer.Option(help=f"Layout: {', '.join(KINDS)}.")] = "beir",
    split: Annotated[list[str] | None, typer.Option(help="Split(s) to check (default: all present).")] = None,
    allow_empty_docs: Annotated[bool, typer.Option(help="Accept documents with empty title and text.")] = False,
) -> None:
    """Load and validate DATA; print counts per split, or one red line naming the file and line at fault."""
    from abharness import data as d

    table = Table(title=f"{data} ({kind})")
    try:
        if kind == "beir":
            splits = split or d.available_splits(data) or ["test"]
            table.add_column("split")
            for col in ("documents", "queries", "judgements", "empty docs"):
                table.add_column(col, justify="right")
            for name in splits:
                ds = d.load_beir(data, name, empty_docs="keep" if allow_empty_docs else "error")
                empty = ds.meta.get("empty_docs", "")
                table.add_row(name, str(len(ds.corpus)), str(len(ds.queries)),
                              str(sum(map(len, ds.qrels.values()))), str(len(empty.split(",")) if empty else 0))
        elif kind in {"stsb", "sick", "trec"}:
            loader, default = {"stsb": (d.load_stsb, ["train", "dev", "test"]), "sick": (d.load_sick, ["train", "trial", "test"]),
                               "trec": (d.load_trec, ["train", "test"])}[kind]
            table.add_column("split")
            table.add_column("items", justify="right")
            for name in split or default:
                table.add_row(name, str(len(loader(data, name))))
        else:
            raise ConfigError(f"--kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    except AbharnessError as exc:
        raise _fail(exc) from None
    Console().print(table)
    Console().print("[green]ok[/]")


def fetch_command(
    name: Annotated[str, typer.Argument(help="Public BEIR data set name (e.g. scifact, nfcorpus, fiqa).")],
    cache_dir: Annotated[Path | None, typer.Option(help="Where to keep data sets (default: user cache dir).")] = None,
) -> None:
    """Download NAME (checksum verified) into the cache, or reuse it; prints the directory to pass as --data."""
    from abharness.data import resolve_data

    try:
        path = resolve_data(name, cache_dir=cache_dir)
    except AbharnessError as exc:
        raise _fail(exc) from None
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Validate and fetch data sets.", no_args_is_help=True)
    group.command("check")(check_command)
    group.command("fetch")(fetch_command)
    app.add_typer(group, name="data")
