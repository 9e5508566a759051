"""FAISS indexes per arm: build from an encoder + corpus, load with a fingerprint check, search vectors."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np

from abharness.core.hits import Hit
from abharness.data.hashing import corpus_hash as compute_corpus_hash
from abharness.data.types import Document, RetrievalDataset
from abharness.encoders.base import Encoder
from abharness.encoders.cache import encode_cached
from abharness.errors import ConfigError, FingerprintMismatch, IndexError_, ModelError
from abharness.fsutil import atomic_directory
from abharness.index.manifest import (
    DOCS_NAME,
    INDEX_KINDS,
    INDEX_NAME,
    MANIFEST_NAME,
    IndexManifest,
    read_index_manifest,
)

__all__ = ["FaissIndex", "build_index", "load_index", "default_params", "accepts_query_encoder", "check_query_encoder",
           "corpus_cache_job"]


def default_params(kind: str, num_docs: int) -> dict[str, Any]:
    """Build/search parameters per kind. IVF: nlist ~ sqrt(n), capped so every list gets >= 39 training points
    (FAISS's own rule of thumb); nprobe = max(8, nlist/8), at most nlist."""
    if kind == "flat":
        return {}
    if kind == "hnsw":
        return {"M": 32, "ef_construction": 200, "ef_search": 128}
    if kind == "ivf":
        nlist = max(1, min(int(math.sqrt(num_docs)), num_docs // 39))
        return {"nlist": nlist, "nprobe": min(nlist, max(8, nlist // 8))}
    raise ConfigError(f"unknown index kind {kind!r}; valid kinds: {', '.join(INDEX_KINDS)}")


def _make_index(kind: str, dim: int, vectors: np.ndarray, params: Mapping[str, Any]) -> Any:
    import faiss

    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, int(params["M"]), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(params["ef_construction"])
    else:
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, int(params["nlist"]), faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
    index.add(vectors)
    _apply_search_params(index, kind, params)
    return index


def _apply_search_params(index: Any, kind: str, params: Mapping[str, Any]) -> None:
    if kind == "hnsw":
        index.hnsw.efSearch = int(params.get("ef_search", 128))
    elif kind == "ivf":
        index.nprobe = int(params.get("nprobe", 1))


class FaissIndex:
    """A loaded index with its doc-id map and manifest. ``search_vectors`` is read-only and thread-safe."""

    def __init__(self, index: Any, doc_ids: list[str], titles: list[str], manifest: IndexManifest) -> None:
        self._index = index
        self.doc_ids = doc_ids
        self.titles = titles
        self.manifest = manifest

    def __len__(self) -> int:
        return len(self.doc_ids)

    def search_vectors(self, q: np.ndarray, k: int) -> list[list[Hit]]:
        """Top-k ``Hit``s (doc id, inner-product score, title) per query row, best first."""
        q = np.asarray(q, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.manifest.dim:
            raise ConfigError(f"query vectors have shape {q.shape}; expected (n, {self.manifest.dim})")
        if not isinstance(k, int) or k < 1:
            raise ConfigError(f"k={k!r}; expected a positive integer")
        if len(q) == 0:
            return []
        scores, rows = self._index.search(np.ascontiguousarray(q), min(k, len(self.doc_ids)))
        return [
            [Hit(doc_id=self.doc_ids[r], score=float(s), title=self.titles[r]) for s, r in zip(srow, rrow) if r >= 0]
            for srow, rrow in zip(scores, rows)
        ]


def _corpus_of(dataset_or_corpus: RetrievalDataset | Mapping[str, Document]) -> tuple[Mapping[str, Document], str, str]:
    if isinstance(dataset_or_corpus, RetrievalDataset):
        ds = dataset_or_corpus
        return ds.corpus, ds.corpus_hash or compute_corpus_hash(ds.corpus), ds.path
    return dataset_or_corpus, compute_corpus_hash(dataset_or_corpus), ""


def corpus_cache_job(encoder: Encoder, dataset_or_corpus: RetrievalDataset | Mapping[str, Document]
                     ) -> tuple[Encoder, list[str], str]:
    """The ``(encoder, texts, key)`` under which ``build_index`` caches the corpus embeddings (``encode_cached``), so
    a caller can encode them beforehand, e.g. two models' at once with ``encode_cached_side_by_side``."""
    corpus, digest, _ = _corpus_of(dataset_or_corpus)
    return encoder, [corpus[d].full_text for d in corpus], f"corpus-{digest[:16]}"


def _digest(*files: Path, extra: str) -> str:
    digest = hashlib.sha256(extra.encode())
    for file in files:
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def _document_model(encoder: Encoder) -> tuple[str, str]:
    """(fingerprint, name) the index pins. An ONNX export stands in for its source model only when its export
    measured document agreement (``documents_pass``); otherwise it cannot encode documents."""
    source = getattr(encoder, "source_fingerprint", None)
    if source is None:
        return encoder.fingerprint, encoder.name
    agreement = getattr(getattr(encoder, "manifest", None), "agreement", {}) or {}
    if not agreement.get("documents_pass"):
        raise ModelError(
            f"ONNX encoder {encoder.name!r} did not pass the document agreement gate at export (doc top-10 overlap "
            f"{agreement.get('doc_topk_overlap', 'n/a')}, cosine {agreement.get('doc_cosine_mean', 'n/a')}); build the "
            "index with its source model and use the export for queries only"
        )
    return source, str(getattr(encoder.manifest, "source_name", encoder.name))


def build_index(
    encoder: Encoder,
    dataset_or_corpus: RetrievalDataset | Mapping[str, Document],
    out_dir: str | Path,
    *,
    kind: str = "flat",
    batch_size: int = 64,
    progress: bool = True,
    use_cache: bool = True,
    cache_dir: Path | None = None,
    overwrite: bool = False,
    params: Mapping[str, Any] | None = None,
    data_path: str | None = None,
    limit: int | None = None,
) -> IndexManifest:
    """Encode the corpus (``Document.full_text``, cached per model + corpus) and write a FAISS index.

    Writes ``index.faiss``, ``doc_ids.jsonl`` (row -> doc id, title) and ``manifest.json`` into ``out_dir``
    atomically (built in a temporary sibling directory, then renamed). ``kind``: ``flat`` (exact inner product,
    default), ``hnsw`` or ``ivf``. Refuses a non-empty ``out_dir`` unless ``overwrite``. ``limit`` indexes only
    the first ``limit`` documents in corpus order (a quick try on a laptop); the manifest records it (``limit``,
    ``source_num_docs``) so a slice is never mistaken for the full index.
    With an ONNX export that passed the document agreement gate, the documents are encoded by the export but the
    manifest pins its source model (the export is recorded under ``params.document_encoder``).
    """
    import faiss

    out_dir = Path(out_dir)
    corpus, corpus_digest, ds_path = _corpus_of(dataset_or_corpus)
    source_num_docs = len(corpus)
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"limit={limit}: must be a positive number of documents (e.g. --limit 500)")
        corpus = {d: corpus[d] for d in list(corpus)[:limit]}
        corpus_digest = compute_corpus_hash(corpus)
    if not corpus:
        raise ConfigError("the corpus is empty; nothing to index")
    merged = {**default_params(kind, len(corpus)), **(params or {})}
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise ConfigError(f"{out_dir} exists and is not empty; choose another --out or pass --overwrite")
    doc_ids = list(corpus)
    _, texts, key = corpus_cache_job(encoder, corpus if limit is not None else dataset_or_corpus)
    pinned_fingerprint, pinned_name = _document_model(encoder)
    if pinned_fingerprint != encoder.fingerprint:
        merged["document_encoder"] = {"fingerprint": encoder.fingerprint, "name": encoder.name,
                                      "variant": getattr(encoder, "variant", "")}
    started = time.perf_counter()
    if use_cache:
        vectors = encode_cached(
            encoder, texts, key=key, cache_dir=cache_dir, batch_size=batch_size,
            progress=progress, kind="document",
        )
    else:
        vectors = encoder.encode(texts, batch_size=batch_size, show_progress=progress, kind="document")
    encoded = time.perf_counter()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index = _make_index(kind, encoder.dim, vectors, merged)
    with atomic_directory(out_dir) as tmp:
        faiss.write_index(index, str(tmp / INDEX_NAME))
        with (tmp / DOCS_NAME).open("w", encoding="utf-8") as handle:
            for doc_id in doc_ids:
                handle.write(json.dumps({"doc_id": doc_id, "title": corpus[doc_id].title}, ensure_ascii=False) + "\n")
        manifest = IndexManifest(
            index_fingerprint=_digest(tmp / INDEX_NAME, tmp / DOCS_NAME, extra=encoder.fingerprint),
            model_fingerprint=pinned_fingerprint,
            model_name=pinned_name,
            corpus_hash=corpus_digest,
            dim=encoder.dim,
            metric="inner_product",
            kind=kind,
            num_docs=len(doc_ids),
            built_at=datetime.now(UTC).isoformat(timespec="seconds"),
            build_seconds=round(time.perf_counter() - started, 3),
            encode_seconds=round(encoded - started, 3),
            data_path=data_path if data_path is not None else ds_path,
            params=merged,
            limit=limit,
            source_num_docs=source_num_docs,
            abharness_version=package_version("abharness"),
        )
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
    return manifest


def accepts_query_encoder(manifest: IndexManifest, encoder: Encoder) -> bool:
    """True when ``encoder`` may encode queries for this index: it is the model that encoded the documents, or an
    export of it (an ONNX encoder whose ``source_fingerprint`` is the index's model fingerprint)."""
    return manifest.model_fingerprint in {encoder.fingerprint, getattr(encoder, "source_fingerprint", None)}


def check_query_encoder(manifest: IndexManifest, encoder: Encoder, *, where: str) -> None:
    """Raise ``FingerprintMismatch`` (one line: both fingerprints and the fix) unless the index accepts ``encoder``."""
    if accepts_query_encoder(manifest, encoder):
        return
    source = getattr(encoder, "source_fingerprint", None)
    if source is not None:
        raise FingerprintMismatch(
            f"{where} pins model {manifest.model_name!r} (fingerprint {manifest.model_fingerprint}) but the ONNX encoder "
            f"{encoder.name!r} was exported from model fingerprint {source}; export it from the model that built the "
            f"index: abharness model export --onnx --model {manifest.model_name} --data DIR --out DIR"
        )
    raise FingerprintMismatch(
        f"{where} was built with model {manifest.model_name!r} (fingerprint {manifest.model_fingerprint}) "
        f"but model {encoder.name!r} has fingerprint {encoder.fingerprint}; use the model it was built with, or "
        f"rebuild: abharness index build --model {encoder.name} --data DIR --out DIR --overwrite"
    )


def load_index(index_dir: str | Path, encoder: Encoder | None = None) -> FaissIndex:
    """Load an index; with ``encoder``, refuse it (``FingerprintMismatch``) unless it is the model that built it."""
    import faiss

    index_dir = Path(index_dir)
    manifest = read_index_manifest(index_dir)
    if encoder is not None:
        check_query_encoder(manifest, encoder, where=f"index {index_dir}")
    for name in (INDEX_NAME, DOCS_NAME):
        if not (index_dir / name).is_file():
            raise IndexError_(f"{index_dir / name} is missing; the index is incomplete, rebuild it")
    try:
        index = faiss.read_index(str(index_dir / INDEX_NAME))
    except RuntimeError as exc:
        raise IndexError_(f"{index_dir / INDEX_NAME} cannot be read by FAISS ({str(exc).splitlines()[0]}); rebuild it") from exc
    doc_ids: list[str] = []
    titles: list[str] = []
    with (index_dir / DOCS_NAME).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                row = json.loads(line)
                doc_ids.append(str(row["doc_id"]))
                titles.append(str(row.get("title", "")))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise IndexError_(f"{index_dir / DOCS_NAME}:{number}: malformed row ({exc}); rebuild the index") from exc
    if not (index.ntotal == len(doc_ids) == manifest.num_docs) or index.d != manifest.dim:
        raise IndexError_(
            f"{index_dir}: inconsistent index ({index.ntotal} vectors of dim {index.d}, {len(doc_ids)} doc ids, manifest "
            f"says {manifest.num_docs} x {manifest.dim}); rebuild it"
        )
    _apply_search_params(index, manifest.kind, manifest.params)
    return FaissIndex(index, doc_ids, titles, manifest)
