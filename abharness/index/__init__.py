"""Per-arm FAISS indexes that know which model and corpus made them."""

from __future__ import annotations

from abharness.index.faiss_index import FaissIndex, build_index, default_params, load_index
from abharness.index.manifest import INDEX_KINDS, IndexManifest, read_index_manifest

__all__ = ["FaissIndex", "IndexManifest", "build_index", "load_index", "read_index_manifest", "default_params", "INDEX_KINDS"]
