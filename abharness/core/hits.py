"""``Hit``: one ranked document as a retrieval backend or an index returns it (a value, no behaviour)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Hit"]


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved document: its id, the backend's similarity score (higher is better) and an optional title."""

    doc_id: str
    score: float
    title: str = ""
