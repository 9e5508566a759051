"""Suite-wide fixtures. Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Nothing may reach a model hub during tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def shared_data_dir() -> Path:
    """../shared/data next to the checkout (override with ABHARNESS_SHARED_DATA)."""
    return Path(os.environ.get("ABHARNESS_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "scifact").is_dir():
        pytest.fail(
            f"real data not found at {path}: the tests read ../shared/data beside the checkout; "
            "set ABHARNESS_SHARED_DATA to its location"
        )
    return path


# The proxy-level fakes shared by tests/proxy and tests/product (a directory's own conftest may override them).
@pytest.fixture
def corpus() -> dict[str, str]:
    from abharness.testing.fakes import tiny_corpus

    return tiny_corpus(40)


@pytest.fixture
def backends(corpus: dict[str, str]) -> dict:
    from abharness.testing.fakes import DictBackend

    return {"baseline": DictBackend(corpus, name="baseline"), "finetuned": DictBackend(corpus, name="finetuned")}


@pytest.fixture
def store():
    from abharness.testing.fakes import MemoryStore

    return MemoryStore()


@pytest.fixture
def writer(store):
    from abharness.testing.fakes import InlineWriter

    return InlineWriter(store)
