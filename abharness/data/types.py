"""Data set values shared by the loaders, fine-tuning, indexing and evaluation. Pure, frozen."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Document", "RetrievalDataset", "SentencePair", "LabelledText"]


@dataclass(frozen=True, slots=True)
class Document:
    doc_id: str
    title: str
    text: str

    @property
    def full_text(self) -> str:
        """Title and text as encoded for retrieval ("title. text", or text alone when untitled)."""
        return f"{self.title}. {self.text}" if self.title else self.text


@dataclass(frozen=True)
class RetrievalDataset:
    """A BEIR-layout collection with the qrels of one split.

    ``qrels`` maps query id -> {doc id: graded relevance (int, > 0 relevant)}; ``queries`` holds only the queries
    of that split that have qrels. ``corpus_hash`` is ``abharness.data.corpus_hash(corpus)``: a sha256 over the
    documents sorted by id (content-based: the same for corpus.jsonl and corpus.jsonl.gz, stable across loads).
    """

    name: str
    path: str
    split: str
    corpus: Mapping[str, Document]
    queries: Mapping[str, str]
    qrels: Mapping[str, Mapping[str, int]]
    corpus_hash: str = ""
    meta: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SentencePair:
    """A scored sentence pair (STS-B score 0-5, SICK relatedness 1-5)."""

    s1: str
    s2: str
    score: float
    split: str


@dataclass(frozen=True, slots=True)
class LabelledText:
    """A text with a coarse and fine label (TREC question classification: "LOC:city")."""

    text: str
    coarse: str
    fine: str
