"""The index manifest: which model and corpus made an index, and how it was built."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path
from typing import Any

from abharness.errors import IndexError_

__all__ = ["IndexManifest", "MANIFEST_NAME", "INDEX_NAME", "DOCS_NAME", "read_index_manifest", "INDEX_KINDS"]

MANIFEST_NAME = "manifest.json"
INDEX_NAME = "index.faiss"
DOCS_NAME = "doc_ids.jsonl"
INDEX_KINDS = ("flat", "hnsw", "ivf")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class IndexManifest:
    """Everything recorded next to a FAISS index. ``metric`` is always inner product over unit vectors (cosine)."""

    index_fingerprint: str
    model_fingerprint: str
    model_name: str
    corpus_hash: str
    dim: int
    metric: str
    kind: str
    num_docs: int
    built_at: str
    build_seconds: float
    encode_seconds: float
    data_path: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    limit: int | None = None  # built from the first ``limit`` documents only (``index build --limit``); None = all
    source_num_docs: int | None = None  # documents in the corpus the slice was taken from
    abharness_version: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def is_slice(self) -> bool:
        """True when the index holds only part of its corpus (``--limit``): never a production index."""
        return self.limit is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the on-disk form)."""
        out = asdict(self)
        out["params"] = dict(self.params)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "manifest") -> IndexManifest:
        """Parse the on-disk form; unknown keys are ignored, missing ones raise ``IndexError_``."""
        fields = cls.__dataclass_fields__
        names = list(fields)
        required = [n for n in names if fields[n].default is MISSING and fields[n].default_factory is MISSING]
        missing = [n for n in required if n not in data]
        if missing:
            raise IndexError_(f"{source}: missing keys {', '.join(missing)}; rebuild the index with `abharness index build`")
        return cls(**{n: data[n] for n in names if n in data})


def read_index_manifest(index_dir: str | Path) -> IndexManifest:
    """Read ``<index_dir>/manifest.json``; raises ``IndexError_`` if the directory is not an abharness index."""
    index_dir = Path(index_dir)
    path = index_dir / MANIFEST_NAME
    if not path.is_file():
        raise IndexError_(
            f"{index_dir} is not an abharness index (no {MANIFEST_NAME}); build one with "
            "`abharness index build --model MODEL --data DIR --out DIR`"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise IndexError_(f"{path}: malformed JSON ({exc.msg}); rebuild the index") from exc
    if not isinstance(data, dict):
        raise IndexError_(f"{path}: expected a JSON object; rebuild the index")
    return IndexManifest.from_dict(data, source=str(path))
