"""Fine-tuning the candidate model: contrastive training on train-split qrels, with a manifest for leakage checks."""

from __future__ import annotations

from abharness.finetune.manifest import MANIFEST_NAME, FinetuneManifest, read_manifest
from abharness.finetune.pairs import Example, duplicate_free_batches, mine_hard_negatives, training_pairs
from abharness.finetune.train import FinetuneParams, finetune

__all__ = [
    "finetune",
    "FinetuneParams",
    "FinetuneManifest",
    "read_manifest",
    "MANIFEST_NAME",
    "Example",
    "training_pairs",
    "mine_hard_negatives",
    "duplicate_free_batches",
]
