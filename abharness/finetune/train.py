"""Fine-tune a sentence-transformers model on (query, relevant document) pairs with MultipleNegativesRankingLoss.

Two training paths over the same loss, pairs, seed and schedule, chosen by ``FinetuneParams.trainer``: ``"st"``
(default) runs sentence-transformers' ``SentenceTransformerTrainer`` (``abharness.finetune.st_trainer``); ``"loop"`` runs
the small explicit loop below (AdamW, linear warm-up and decay, gradient clipping, duplicate-free batches). Both run on
CPU unless told otherwise and write the same manifest.
Loss: van den Oord et al. 2018 (InfoNCE) / Henderson et al. 2017, in-batch negatives, cosine similarity x scale.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from abharness.data.beir import load_beir
from abharness.data.hashing import dataset_hash, text_sha256
from abharness.data.types import RetrievalDataset
from abharness.encoders.fingerprint import fingerprint_dir
from abharness.encoders.st import load_encoder
from abharness.errors import ConfigError
from abharness.finetune.manifest import MANIFEST_NAME, FinetuneManifest
from abharness.finetune.pairs import Example, duplicate_free_batches, mine_hard_negatives, training_pairs
from abharness.fsutil import atomic_directory

__all__ = ["FinetuneParams", "finetune", "TRAINERS"]

TRAINERS = ("st", "loop")


@dataclass(frozen=True, slots=True)
class FinetuneParams:
    """Hyperparameters. Defaults finish full SciFact train (919 pairs) in minutes on 2 CPU cores."""

    epochs: int = 1
    batch_size: int = 32
    lr: float = 5e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_seq_length: int = 128  # training truncation; the saved model keeps the base model's max_seq_length
    scale: float = 20.0
    max_grad_norm: float = 1.0
    hard_negatives: int = 0
    negative_rank_start: int = 3
    negative_rank_end: int = 30
    max_pairs: int | None = None
    trainer: str = "st"  # "st": SentenceTransformerTrainer (default, docs/foundation.md); "loop": the loop below

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the first bad value."""
        checks = [
            (self.epochs >= 1, f"epochs={self.epochs}; must be >= 1"),
            (self.batch_size >= 2, f"batch_size={self.batch_size}; in-batch negatives need >= 2"),
            (0 < self.lr < 1, f"lr={self.lr}; expected a small positive learning rate such as 3e-5"),
            (0 <= self.warmup_ratio < 1, f"warmup_ratio={self.warmup_ratio}; expected 0 <= ratio < 1"),
            (self.max_seq_length >= 8, f"max_seq_length={self.max_seq_length}; must be >= 8"),
            (self.hard_negatives >= 0, f"hard_negatives={self.hard_negatives}; must be >= 0"),
            (self.trainer in TRAINERS, f"trainer={self.trainer!r}; expected one of {', '.join(TRAINERS)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


def _loss_class() -> Any:
    try:
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.losses import MultipleNegativesRankingLoss
    return MultipleNegativesRankingLoss


def _optimizer(model: Any, params: FinetuneParams, total_steps: int) -> tuple[Any, Any]:
    import torch

    no_decay = ("bias", "LayerNorm.weight", "LayerNorm.bias")
    named = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in named if not any(nd in n for nd in no_decay)], "weight_decay": params.weight_decay},
        {"params": [p for n, p in named if any(nd in n for nd in no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=params.lr)
    warmup = int(total_steps * params.warmup_ratio)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def _train(
    model: Any, ds: RetrievalDataset, examples: list[Example], params: FinetuneParams, seed: int, progress: bool
) -> list[float]:
    import torch

    rng = random.Random(seed)
    epochs = [duplicate_free_batches(examples, params.batch_size, rng) for _ in range(params.epochs)]
    total = sum(len(batches) for batches in epochs)
    if total == 0:
        raise ConfigError(f"{len(examples)} pairs make no batch of >= 2 distinct queries/documents; use more pairs")
    loss_fn = _loss_class()(model, scale=params.scale)
    optimizer, scheduler = _optimizer(model, params, total)
    model.train()
    epoch_losses: list[float] = []
    columns = (
        TextColumn("fine-tuning"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(), TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("train", total=total, loss=float("nan"))
        for batches in epochs:
            losses = []
            for batch in batches:
                columns_text = [[ds.queries[e.query_id] for e in batch], [ds.corpus[e.doc_id].full_text for e in batch]]
                for j in range(params.hard_negatives):
                    columns_text.append([ds.corpus[e.negative_ids[j]].full_text for e in batch])
                features = [model.preprocess(texts) for texts in columns_text]
                loss = loss_fn(features, None)
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), params.max_grad_norm)
                optimizer.step()
                scheduler.step()
                losses.append(float(loss.detach()))
                bar.update(task, advance=1, loss=float(np.mean(losses[-10:])))
            epoch_losses.append(round(float(np.mean(losses)), 6) if losses else float("nan"))
    model.eval()
    return epoch_losses


def finetune(
    data: RetrievalDataset | str | Path,
    *,
    base: str,
    out_dir: str | Path,
    split: str = "train",
    params: FinetuneParams | None = None,
    seed: int = 42,
    overwrite: bool = False,
    progress: bool = True,
    device: str = "cpu",
) -> FinetuneManifest:
    """Fine-tune ``base`` ("minilm", a model directory or hub id) on the ``split`` qrels of ``data`` and write a
    sentence-transformers model plus ``abharness_manifest.json`` into ``out_dir`` (atomically). Seeded: Python,
    NumPy and torch RNGs, batch order and negative sampling all derive from ``seed``."""
    import torch

    params = params or FinetuneParams()
    params.validate()
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise ConfigError(f"{out_dir} exists and is not empty; choose another --out or pass --overwrite")
    ds = data if isinstance(data, RetrievalDataset) else load_beir(data, split)
    started = time.perf_counter()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    encoder = load_encoder(base, device=device)
    model = encoder.model
    inference_length = model.max_seq_length
    model.max_seq_length = params.max_seq_length  # training truncation only (speed on CPU)
    examples = training_pairs(ds, max_pairs=params.max_pairs, seed=seed)
    if params.hard_negatives:
        examples = mine_hard_negatives(
            encoder, ds, examples, per_pair=params.hard_negatives,
            rank_range=(params.negative_rank_start, params.negative_rank_end), seed=seed, progress=progress,
        )
    if params.trainer == "st":
        from abharness.finetune.st_trainer import train_with_trainer

        losses = train_with_trainer(model, ds, examples, params, seed, progress, device=device)
    else:
        losses = _train(model, ds, examples, params, seed, progress)
    model.max_seq_length = inference_length  # the candidate encodes like the baseline: no confound from truncation
    with atomic_directory(out_dir) as tmp:
        model.save(str(tmp), create_model_card=False)
        query_ids = sorted({e.query_id for e in examples})
        manifest = FinetuneManifest(
            base_model=str(base),
            base_fingerprint=encoder.fingerprint,
            fingerprint=fingerprint_dir(tmp),
            data_path=str(ds.path),
            data_hash=dataset_hash(ds),
            split=ds.split,
            query_ids=query_ids,
            doc_ids=sorted({e.doc_id for e in examples} | {n for e in examples for n in e.negative_ids}),
            pairs=[[e.query_id, e.doc_id] for e in examples],
            query_texts_sha256=[text_sha256(ds.queries[q]) for q in query_ids],
            hyperparameters={
                **{k: getattr(params, k) for k in params.__dataclass_fields__},
                "device": device, "torch_threads": torch.get_num_threads(), "loss": "MultipleNegativesRankingLoss",
            },
            seed=seed,
            wall_seconds=round(time.perf_counter() - started, 2),
            negatives=[[e.query_id, e.doc_id, n] for e in examples for n in e.negative_ids],
            corpus_hash=ds.corpus_hash,
            train_loss=losses,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            abharness_version=package_version("abharness"),
        )
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest.to_dict(), indent=1) + "\n", encoding="utf-8")
    return manifest
