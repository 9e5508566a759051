"""``abharness index build|info``: per-arm FAISS indexes that record the model that made them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from abharness.errors import AbharnessError

__all__ = ["register"]

EXIT_USAGE_ERROR = 2


def _fail(exc: AbharnessError) -> typer.Exit:
    Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
    return typer.Exit(EXIT_USAGE_ERROR)


def build_command(
    model: Annotated[str, typer.Option(help="Model: 'minilm' (built in), a model directory or a hub id.")],
    data: Annotated[Path, typer.Option(help="BEIR data directory whose corpus is indexed.")],
    out: Annotated[Path, typer.Option(help="Output index directory.")],
    kind: Annotated[str, typer.Option(help="flat (exact inner product), hnsw or ivf (approximate, large corpora).")] = "flat",
    batch_size: Annotated[int, typer.Option(help="Documents per encoder batch.")] = 64,
    allow_empty_docs: Annotated[bool, typer.Option(help="Keep documents with empty title and text.")] = False,
    cache: Annotated[bool, typer.Option(help="Reuse/store corpus embeddings in the user cache.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out directory.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Encode the corpus of DATA with MODEL and write a FAISS index, its doc-id map and a manifest into OUT."""
    from abharness.data import load_corpus
    from abharness.encoders import load_encoder
    from abharness.index import build_index

    try:
        corpus = load_corpus(data, empty_docs="keep" if allow_empty_docs else "error")
        encoder = load_encoder(model)
        manifest = build_index(
            encoder, corpus, out, kind=kind, batch_size=batch_size, progress=progress, use_cache=cache,
            overwrite=overwrite, data_path=str(data),
        )
    except AbharnessError as exc:
        raise _fail(exc) from None
    Console(soft_wrap=True).print(
        f"[green]wrote[/] {out}  {manifest.kind} index of {manifest.num_docs} docs x {manifest.dim}  model "
        f"{manifest.model_fingerprint}  index {manifest.index_fingerprint}  encode {manifest.encode_seconds:.1f}s  "
        f"total {manifest.build_seconds:.1f}s"
    )


def info_command(
    index_dir: Annotated[Path, typer.Argument(help="Index directory written by `abharness index build`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Show the manifest of an index: model and index fingerprints, corpus hash, size, kind, build time."""
    from abharness.index import read_index_manifest

    try:
        manifest = read_index_manifest(index_dir)
    except AbharnessError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(manifest.to_dict(), indent=2))
        return
    table = Table(title=str(index_dir), show_header=False)
    for key, value in manifest.to_dict().items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    Console().print(table)


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Build and inspect per-arm FAISS indexes.", no_args_is_help=True)
    group.command("build")(build_command)
    group.command("info")(info_command)
    app.add_typer(group, name="index")
