"""``abharness index build|info``: per-arm FAISS indexes that record the model that made them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from abharness.errors import ConfigError

__all__ = ["register"]


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
    limit: Annotated[Optional[int], typer.Option(
        min=1, help="Index only the first N documents (a quick try); recorded in the manifest as a slice.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the written manifest as JSON on stdout.")] = False,
) -> None:
    """Encode the corpus of DATA with MODEL and write a FAISS index, its doc-id map and a manifest into OUT."""
    from abharness.data import load_corpus
    from abharness.encoders import check_model_spec, load_encoder
    from abharness.index import INDEX_KINDS, build_index

    # Everything that can be checked without the model is checked first: loading it takes seconds to minutes.
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ConfigError(f"--out {str(out)!r} exists and is not empty; choose another --out or pass --overwrite")
    if kind not in INDEX_KINDS:
        raise ConfigError(f"--kind {kind!r}: not an index kind; valid kinds: {', '.join(INDEX_KINDS)}")
    check_model_spec(model, option="--model")
    corpus = load_corpus(data, empty_docs="keep" if allow_empty_docs else "error")
    encoder = load_encoder(model)
    manifest = build_index(
        encoder, corpus, out, kind=kind, batch_size=batch_size, progress=progress, use_cache=cache,
        overwrite=overwrite, data_path=str(data), limit=limit,
    )
    if json_out:
        typer.echo(json.dumps(manifest.to_dict(), indent=2))
        return
    sliced = f"  [yellow]SLICE: first {manifest.num_docs} of {manifest.source_num_docs} documents[/]" if (
        manifest.is_slice) else ""
    Console(soft_wrap=True, stderr=False).print(
        f"[green]wrote[/] {out}  {manifest.kind} index of {manifest.num_docs} docs x {manifest.dim}  model "
        f"{manifest.model_fingerprint}  index {manifest.index_fingerprint}  encode {manifest.encode_seconds:.1f}s  "
        f"total {manifest.build_seconds:.1f}s{sliced}"
    )


def info_command(
    index_dir: Annotated[Path, typer.Argument(help="Index directory written by `abharness index build`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Show the manifest of an index: model and index fingerprints, corpus hash, size, kind, build time."""
    from abharness.index import read_index_manifest

    manifest = read_index_manifest(index_dir)
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
