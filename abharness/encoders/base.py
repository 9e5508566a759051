"""The encoder Protocol: texts in, L2-normalised float32 embeddings out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Encoder"]


@runtime_checkable
class Encoder(Protocol):
    """A sentence encoder. ``fingerprint`` is a hash of the weights and config (see ``abharness.encoders.fingerprint``)."""

    name: str
    fingerprint: str
    dim: int

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False, kind: str = "query"
    ) -> np.ndarray:
        """Return an (n, dim) float32 array with unit-norm rows. ``kind`` is "query" or "document"."""
