"""Stable content hashes for data sets and texts (used by manifests and the leakage check)."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Mapping

from abharness.data.types import Document, RetrievalDataset

__all__ = ["normalize_text", "text_sha256", "corpus_hash", "dataset_hash"]

_SPACE = re.compile(r"\s+")
_SEP_FIELD = b"\x1f"
_SEP_RECORD = b"\x1e"


def normalize_text(text: str) -> str:
    """Normalise a text for near-duplicate matching: NFKC, case-folded, whitespace collapsed, stripped.

    The fine-tuning manifest stores ``text_sha256`` of the normalised query texts, so a later leakage check can find
    evaluation queries that were trained on even when their ids differ.
    """
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def text_sha256(text: str) -> str:
    """sha256 (hex) of ``normalize_text(text)`` encoded as UTF-8."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()


def _records_hash(records: Iterable[Iterable[str]]) -> str:
    digest = hashlib.sha256()
    for record in records:
        digest.update(_SEP_FIELD.join(field.encode("utf-8") for field in record))
        digest.update(_SEP_RECORD)
    return digest.hexdigest()


def corpus_hash(corpus: Mapping[str, Document]) -> str:
    """sha256 (hex) over the documents sorted by id: (id, title, text) for each.

    Content-based, so ``corpus.jsonl`` and ``corpus.jsonl.gz`` of the same data, or a slice built in memory, hash
    the same way; the order of the file does not matter.
    """
    return _records_hash((doc_id, corpus[doc_id].title, corpus[doc_id].text) for doc_id in sorted(corpus))


def dataset_hash(ds: RetrievalDataset) -> str:
    """sha256 (hex) over the corpus hash, the split name, its queries and its graded qrels (all sorted)."""
    corpus_part = ds.corpus_hash or corpus_hash(ds.corpus)
    records: list[tuple[str, ...]] = [("corpus", corpus_part), ("split", ds.split)]
    records += [("q", qid, ds.queries[qid]) for qid in sorted(ds.queries)]
    records += [
        ("r", qid, did, str(score)) for qid in sorted(ds.qrels) for did, score in sorted(ds.qrels[qid].items())
    ]
    return _records_hash(records)
