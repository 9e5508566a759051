"""Fixtures for issue-14 product features (browser events, http backend, signed units, bots, paging, UBI)."""

from __future__ import annotations

import pytest

from abharness.testing.fakes import DictBackend, InlineWriter, MemoryStore, tiny_corpus


@pytest.fixture
def corpus() -> dict[str, str]:
    return tiny_corpus(60)


@pytest.fixture
def backends(corpus: dict[str, str]) -> dict[str, DictBackend]:
    return {"baseline": DictBackend(corpus, name="baseline"), "finetuned": DictBackend(corpus, name="finetuned")}


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def writer(store: MemoryStore) -> InlineWriter:
    return InlineWriter(store)
