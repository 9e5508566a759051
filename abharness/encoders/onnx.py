"""An ``Encoder`` backed by ONNX Runtime, loaded from a directory written by ``abharness model export --onnx``.

The directory holds ``model.onnx`` (the transformer: token ids in, token embeddings out), the fast tokenizer
(``tokenizer.json``), ``onnx_encoder.json`` (pooling mode, normalisation, max sequence length) and
``onnx_manifest.json``: the encoder's own fingerprint (sha256 over the ONNX file, the tokenizer and the settings),
the fingerprint of the sentence-transformers model it was exported from (``source_fingerprint``), the variant, and
the agreement with that model measured at export time.

Pooling and normalisation run in numpy after the ONNX graph, exactly as sentence-transformers does them (mean over
non-padding tokens, CLS, or max; then L2). Padding is dynamic: each batch is padded to its longest text only, and
texts are sorted by length first so batches pad little.

An index pins the model that encoded its documents. An ``OnnxEncoder`` is accepted as the *query* encoder of an
index only when its ``source_fingerprint`` equals the index's model fingerprint (``encoder_accepted``).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from abharness.encoders.fingerprint import FINGERPRINT_LENGTH
from abharness.encoders.st import encode_sorted
from abharness.errors import ModelError

__all__ = [
    "OnnxEncoder",
    "OnnxManifest",
    "load_onnx_encoder",
    "is_onnx_dir",
    "onnx_fingerprint",
    "read_onnx_manifest",
    "ONNX_FILE",
    "SETTINGS_FILE",
    "MANIFEST_FILE",
    "TOKENIZER_FILES",
    "POOLING_MODES",
]

ONNX_FILE = "model.onnx"
SETTINGS_FILE = "onnx_encoder.json"
MANIFEST_FILE = "onnx_manifest.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
POOLING_MODES = ("mean", "cls", "max")


@dataclass(frozen=True)
class OnnxManifest:
    """What ``onnx_manifest.json`` records. ``agreement`` holds the measured figures and the thresholds."""

    fingerprint: str
    source_fingerprint: str
    source_name: str
    variant: str
    dim: int
    agreement: dict[str, Any] = field(default_factory=dict)
    frontier: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = ""
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_onnx_dir(path: str | Path) -> bool:
    """True when ``path`` is a directory written by ``abharness model export --onnx``."""
    p = Path(path)
    return p.is_dir() and (p / MANIFEST_FILE).is_file() and (p / ONNX_FILE).is_file()


def onnx_fingerprint(path: str | Path) -> str:
    """sha256 (16 hex chars) over the ONNX file, the tokenizer files present and the pooling settings."""
    path = Path(path)
    outer = hashlib.sha256()
    for name in (ONNX_FILE, SETTINGS_FILE, *TOKENIZER_FILES):
        file = path / name
        if not file.is_file():
            continue
        inner = hashlib.sha256()
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                inner.update(chunk)
        outer.update(f"{name}\0{inner.hexdigest()}\n".encode())
    return outer.hexdigest()[:FINGERPRINT_LENGTH]


def _read_json(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{file}: unreadable ({exc}); re-run `abharness model export --onnx`") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{file}: expected a JSON object; re-run `abharness model export --onnx`")
    return data


def read_onnx_manifest(path: str | Path) -> OnnxManifest:
    """Parse ``onnx_manifest.json``; raises ``ModelError`` when it is missing or malformed."""
    file = Path(path) / MANIFEST_FILE
    data = _read_json(file)
    known = OnnxManifest.__dataclass_fields__
    missing = [k for k in ("fingerprint", "source_fingerprint", "source_name", "variant", "dim") if k not in data]
    if missing:
        raise ModelError(f"{file}: missing keys {', '.join(missing)}; re-run `abharness model export --onnx`")
    return OnnxManifest(**{k: v for k, v in data.items() if k in known})


def pool(token_embeddings: np.ndarray, attention_mask: np.ndarray, mode: str, normalize: bool) -> np.ndarray:
    """Sentence embeddings from token embeddings (batch, seq, dim), as sentence-transformers' Pooling + Normalize."""
    mask = attention_mask[..., None].astype(np.float32)
    if mode == "mean":
        out = (token_embeddings * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
    elif mode == "cls":
        out = token_embeddings[:, 0]
    elif mode == "max":
        out = np.where(mask > 0, token_embeddings, -1e9).max(axis=1)
    else:
        raise ModelError(f"pooling mode {mode!r}; supported: {', '.join(POOLING_MODES)}")
    out = out.astype(np.float32, copy=False)
    if normalize:
        out /= np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
    return out


class OnnxEncoder:
    """``Encoder`` over an ONNX Runtime session. Thread-safe: one tokenizer call at a time, session runs in parallel.

    ``fingerprint`` is the export's own; ``source_fingerprint`` the sentence-transformers model it came from.
    ``threads`` is ONNX Runtime's intra-op thread count (1 keeps a serving process from fighting its HTTP threads).
    """

    def __init__(self, path: str | Path, *, threads: int = 1, name: str | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.path = Path(path)
        if not is_onnx_dir(self.path):
            raise ModelError(
                f"{self.path} is not an ONNX encoder directory (needs {ONNX_FILE} and {MANIFEST_FILE}); "
                "write one with `abharness model export --onnx --model MODEL --data DIR --out DIR`"
            )
        self.manifest = read_onnx_manifest(self.path)
        actual = onnx_fingerprint(self.path)
        if actual != self.manifest.fingerprint:
            raise ModelError(
                f"{self.path}: files hash to {actual} but the manifest says {self.manifest.fingerprint}; the export "
                "was modified after it was written; re-run `abharness model export --onnx`"
            )
        settings = _read_json(self.path / SETTINGS_FILE)
        self.pooling = str(settings.get("pooling", "mean"))
        self.normalize = bool(settings.get("normalize", True))
        self.max_seq_length = int(settings.get("max_seq_length", 256))
        if self.pooling not in POOLING_MODES:
            raise ModelError(f"{self.path / SETTINGS_FILE}: pooling {self.pooling!r}; supported: {', '.join(POOLING_MODES)}")
        if not (self.path / "tokenizer.json").is_file():
            raise ModelError(f"{self.path}: no tokenizer.json (a fast tokenizer is required); re-run the export")
        self._tokenizer = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=self.max_seq_length)
        pad_id = int(settings.get("pad_token_id", 0))
        self._tokenizer.enable_padding(pad_id=pad_id, pad_token=str(settings.get("pad_token", "[PAD]")))
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(str(self.path / ONNX_FILE), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise ModelError(f"{self.path / ONNX_FILE}: ONNX Runtime cannot load it ({exc}); re-run the export") from exc
        self._inputs = {i.name for i in self._session.get_inputs()}
        self.name = name or str(self.path)
        self.fingerprint = self.manifest.fingerprint
        self.source_fingerprint = self.manifest.source_fingerprint
        self.variant = self.manifest.variant
        self.dim = int(self.manifest.dim)
        self.threads = max(1, int(threads))
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"OnnxEncoder(name={self.name!r}, variant={self.variant!r}, fingerprint={self.fingerprint!r}, "
                f"source_fingerprint={self.source_fingerprint!r}, dim={self.dim})")

    def _run(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            encodings = self._tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.asarray([e.type_ids for e in encodings], dtype=np.int64)
        (tokens,) = self._session.run(None, feeds)[:1]
        return pool(tokens, mask, self.pooling, self.normalize)

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False, kind: str = "query"
    ) -> np.ndarray:
        """(n, dim) float32 rows (unit-norm when the source model normalises). Batches sorted by length."""
        return encode_sorted(texts, self.dim, self._run, batch_size=batch_size, show_progress=show_progress, kind=kind,
                             label=" (onnx)")


def load_onnx_encoder(path: str | Path, *, threads: int = 1) -> OnnxEncoder:
    """Load an ONNX encoder directory (checked against its own fingerprint). Raises ``ModelError``."""
    return OnnxEncoder(path, threads=threads)
