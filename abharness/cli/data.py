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
    names: Annotated[list[str], typer.Argument(
        help="'all' (the sets the demo and the evaluation suite read: scifact, cranfield, cisi, stsbenchmark, sick, "
             "trec_qc), any of those, or another public BEIR name (nfcorpus, arguana, fiqa, ...).")],
    cache_dir: Annotated[Path | None, typer.Option(
        help="Folder that receives one sub-folder per data set (default: <user cache dir>/data).")] = None,
    base_url: Annotated[str | None, typer.Option(
        help="Fetch from this mirror instead: replaces scheme and host of every URL, keeps the path. "
             "Default: $ABHARNESS_DATA_BASE_URL, else the public hosts.")] = None,
    force: Annotated[bool, typer.Option(help="Download again even when a verified copy is cached.")] = False,
    progress: Annotated[bool, typer.Option(help="Show download progress.")] = True,
) -> None:
    """Download data sets from their pinned public origins (sha256 verified, converted to the ../shared/data layout)
    into the cache, or reuse them; prints each folder, and the root to pass as --data-root to demo and evaluate."""
    from abharness.data import resolve_data
    from abharness.data.public import PUBLIC_DATASETS, fetch_public, public_cache_dir

    wanted = list(PUBLIC_DATASETS) if names == ["all"] else names
    for name in wanted:
        if name in PUBLIC_DATASETS:
            path = fetch_public(name, cache_dir=cache_dir, base_url=base_url, progress=progress, force=force)
        else:
            path = resolve_data(name, cache_dir=cache_dir, progress=progress)
        typer.echo(str(path))
    if any(name in PUBLIC_DATASETS for name in wanted):
        Console(stderr=True).print(f"data root (--data-root for demo and evaluate): {public_cache_dir(cache_dir)}",
                                   soft_wrap=True, highlight=False)


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Validate and fetch data sets.", no_args_is_help=True)
    group.command("check")(check_command)
    group.command("fetch")(fetch_command)
    app.add_typer(group, name="data")
