"""Model fingerprints: a short sha256 over a model directory's weight and configuration files.

Every index manifest, evaluation report and logged exposure records the fingerprint, so an artefact can refuse a
model other than the one that made it. The hash covers, sorted by relative path: weight files (``*.safetensors``,
``*.bin``, ``*.pt``, ``*.pth``), JSON configs, and tokenizer vocabularies (``*.txt``, ``*.model``) at the top level
and inside the module folders named in ``modules.json`` (e.g. ``1_Pooling``). READMEs, the abharness training
manifest and training checkpoints are not part of it, so writing a manifest or a model card does not change it.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

from abharness.errors import ModelError

__all__ = ["model_fingerprint", "fingerprint_dir", "FINGERPRINT_LENGTH"]

FINGERPRINT_LENGTH = 16
_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".json", ".txt", ".model"}
_EXCLUDED = {"abharness_manifest.json", "training_args.bin", "trainer_state.json", "optimizer.pt", "scheduler.pt"}


def _module_dirs(path: Path) -> list[Path]:
    modules = path / "modules.json"
    dirs = [path]
    if modules.is_file():
        try:
            entries = json.loads(modules.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ModelError(f"{modules}: malformed JSON ({exc.msg}); the model directory is damaged") from exc
        for entry in entries:
            sub = str(entry.get("path", "")) if isinstance(entry, dict) else ""
            if sub and (path / sub).is_dir():
                dirs.append(path / sub)
    return dirs


def _file_digest(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint_dir(path: str | Path) -> str:
    """Fingerprint of a sentence-transformers model directory (16 hex chars of a sha256; stable across runs)."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"cannot fingerprint {path}: not a directory; pass a sentence-transformers model directory")
    files = sorted(
        {
            f
            for folder in _module_dirs(path)
            for f in folder.iterdir()
            if f.is_file() and f.suffix in _SUFFIXES and f.name not in _EXCLUDED
        }
    )
    if not any(f.suffix in {".safetensors", ".bin", ".pt", ".pth"} for f in files):
        raise ModelError(f"cannot fingerprint {path}: no weight file (*.safetensors, *.bin) found; is it a model directory?")
    outer = hashlib.sha256()
    for file in files:
        outer.update(f"{file.relative_to(path).as_posix()}\0{_file_digest(file)}\n".encode())
    return outer.hexdigest()[:FINGERPRINT_LENGTH]


def model_fingerprint(path_or_model: str | Path | Any) -> str:
    """Fingerprint of a model given as a directory, an abharness ``Encoder`` (its recorded fingerprint) or an
    in-memory ``SentenceTransformer`` (saved to a temporary directory and hashed the same way)."""
    if isinstance(path_or_model, str | Path):
        return fingerprint_dir(path_or_model)
    recorded = getattr(path_or_model, "fingerprint", None)
    if isinstance(recorded, str) and recorded:
        return recorded
    save = getattr(path_or_model, "save", None)
    if callable(save):
        with tempfile.TemporaryDirectory(prefix="abharness-fp-") as tmp:
            save(tmp, create_model_card=False)
            return fingerprint_dir(tmp)
    raise ModelError(f"cannot fingerprint {type(path_or_model).__name__}; pass a model directory or a SentenceTransformer")
