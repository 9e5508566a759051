"""``abharness finetune``: make the candidate model from the baseline and the train qrels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["register"]



def finetune_command(
    data: Annotated[Path, typer.Option(help="BEIR data directory (corpus.jsonl[.gz], queries.jsonl, qrels/).")],
    out: Annotated[Path, typer.Option(help="Output model directory (sentence-transformers layout + manifest).")],
    base: Annotated[str, typer.Option(help="Base model: 'minilm' (built in), a model directory or a hub id.")] = "minilm",
    split: Annotated[str, typer.Option(help="Qrels split whose (query, relevant doc) pairs are trained on.")] = "train",
    epochs: Annotated[int, typer.Option(help="Passes over the training pairs.")] = 1,
    batch_size: Annotated[int, typer.Option(help="Pairs per step (in-batch negatives: larger is harder).")] = 32,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, 10% linear warm-up, linear decay).")] = 5e-5,
    max_seq_length: Annotated[
        int, typer.Option(help="Token truncation while training (the saved model keeps the base model's length).")
    ] = 128,
    hard_negatives: Annotated[
        int, typer.Option(help="Hard negatives per pair mined with the base model (0 = in-batch negatives only).")
    ] = 0,
    max_pairs: Annotated[int | None, typer.Option(help="Train on a seeded random subset of this many pairs.")] = None,
    trainer: Annotated[str, typer.Option(
        help="st: sentence-transformers' SentenceTransformerTrainer; loop: the hand-written loop (docs/foundation.md "
             "compares them).")] = "st",
    seed: Annotated[int, typer.Option(help="Seed for batch order, negative sampling, dropout.")] = 42,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out directory.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print the written manifest as JSON on stdout.")] = False,
) -> None:
    """Fine-tune BASE with MultipleNegativesRankingLoss on the SPLIT qrels of DATA; write the model and
    abharness_manifest.json (base fingerprint, data hash, query/doc ids used, hyperparameters) into OUT."""
    from abharness.encoders import check_model_spec
    from abharness.errors import ConfigError
    from abharness.finetune import FinetuneParams, finetune

    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ConfigError(f"--out {str(out)!r} exists and is not empty; choose another --out or pass --overwrite")
    check_model_spec(base, option="--base")
    params = FinetuneParams(
        epochs=epochs, batch_size=batch_size, lr=lr, max_seq_length=max_seq_length,
        hard_negatives=hard_negatives, max_pairs=max_pairs, trainer=trainer,
    )
    manifest = finetune(data, base=base, out_dir=out, split=split, params=params, seed=seed,
                        overwrite=overwrite, progress=progress)
    if json_out:
        import json

        typer.echo(json.dumps(manifest.to_dict(), indent=2, default=str))
        return
    Console(soft_wrap=True).print(
        f"[green]wrote[/] {out}  fingerprint {manifest.fingerprint} (base {manifest.base_fingerprint})  "
        f"{len(manifest.pairs)} pairs, {len(manifest.query_ids)} queries  loss/epoch {manifest.train_loss}  "
        f"{manifest.wall_seconds:.1f}s"
    )


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune_command)
