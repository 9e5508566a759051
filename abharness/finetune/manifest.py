"""The training manifest written next to a fine-tuned model; the leakage check reads it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path
from typing import Any

from abharness.errors import ModelError

__all__ = ["FinetuneManifest", "read_manifest", "MANIFEST_NAME"]

MANIFEST_NAME = "abharness_manifest.json"


@dataclass(frozen=True)
class FinetuneManifest:
    """What a fine-tuned model was made from.

    ``pairs`` are the (query id, relevant doc id) training pairs; ``query_texts_sha256`` holds
    ``abharness.data.text_sha256`` of each training query text (normalised), aligned with ``query_ids``;
    ``negatives`` are (query id, positive doc id, mined negative doc id) triples when hard negatives were used.
    """

    base_model: str
    base_fingerprint: str
    fingerprint: str
    data_path: str
    data_hash: str
    split: str
    query_ids: Sequence[str]
    doc_ids: Sequence[str]
    pairs: Sequence[Sequence[str]]
    query_texts_sha256: Sequence[str]
    hyperparameters: Mapping[str, Any]
    seed: int
    wall_seconds: float
    negatives: Sequence[Sequence[str]] = field(default_factory=list)
    corpus_hash: str = ""
    train_loss: Sequence[float] = field(default_factory=list)
    created_at: str = ""
    abharness_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the on-disk form)."""
        out = asdict(self)
        out["hyperparameters"] = dict(self.hyperparameters)
        out["pairs"] = [list(p) for p in self.pairs]
        out["negatives"] = [list(n) for n in self.negatives]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "manifest") -> FinetuneManifest:
        """Parse the on-disk form; unknown keys are ignored, missing required keys raise ``ModelError``."""
        fields = cls.__dataclass_fields__
        missing = [
            n for n, f in fields.items() if f.default is MISSING and f.default_factory is MISSING and n not in data
        ]
        if missing:
            raise ModelError(f"{source}: missing keys {', '.join(missing)}; it was not written by `abharness finetune`")
        return cls(**{n: data[n] for n in fields if n in data})


def read_manifest(model_dir: str | Path) -> FinetuneManifest | None:
    """The training manifest of a model directory, or ``None`` when the model was not made by abharness."""
    path = Path(model_dir) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: malformed JSON ({exc.msg}); re-run `abharness finetune` or delete the file") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return FinetuneManifest.from_dict(data, source=str(path))
