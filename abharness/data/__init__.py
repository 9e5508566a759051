"""Data sets: BEIR retrieval collections, STS-B, SICK, TREC-QC; validation, slicing, hashing, download."""

from __future__ import annotations

from abharness.data.beir import available_splits, load_beir, load_corpus, load_qrels, load_queries
from abharness.data.download import BEIR_SOURCES, DataSource, cache_root, resolve_data
from abharness.data.hashing import corpus_hash, dataset_hash, normalize_text, text_sha256
from abharness.data.pairs import load_sick, load_stsb, load_trec
from abharness.data.slicing import slice_dataset
from abharness.data.types import Document, LabelledText, RetrievalDataset, SentencePair

__all__ = [
    "Document",
    "RetrievalDataset",
    "SentencePair",
    "LabelledText",
    "load_beir",
    "load_corpus",
    "load_queries",
    "load_qrels",
    "available_splits",
    "load_stsb",
    "load_sick",
    "load_trec",
    "slice_dataset",
    "resolve_data",
    "cache_root",
    "DataSource",
    "BEIR_SOURCES",
    "corpus_hash",
    "dataset_hash",
    "normalize_text",
    "text_sha256",
]
