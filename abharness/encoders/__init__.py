"""Encoders: sentence-transformers models behind the ``Encoder`` Protocol, fingerprints, embedding cache."""

from __future__ import annotations

from abharness.encoders.base import Encoder
from abharness.encoders.cache import embeddings_cache_dir, encode_cached
from abharness.encoders.fingerprint import fingerprint_dir, model_fingerprint
from abharness.encoders.st import (
    BUILTIN_MODELS,
    SentenceTransformerEncoder,
    builtin_model_path,
    check_model_spec,
    downloads_allowed,
    load_encoder,
)

__all__ = [
    "Encoder",
    "SentenceTransformerEncoder",
    "load_encoder",
    "check_model_spec",
    "downloads_allowed",
    "builtin_model_path",
    "BUILTIN_MODELS",
    "model_fingerprint",
    "fingerprint_dir",
    "encode_cached",
    "embeddings_cache_dir",
]
