"""Fixtures for replay/simulation tests: a toy collection served by the real proxy app over fake backends."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from abharness.api.app import create_app
from abharness.core.clickmodels import make_click_model
from abharness.simulate import QueryPool, plan_traffic, run_simulation
from abharness.testing.configs import make_config
from abharness.testing.fakes import DictBackend, tiny_corpus

TOPICS = ["cell", "protein", "virus", "cancer", "gene", "brain", "heart", "immune", "drug", "blood"]


def toy_collection(n_docs: int = 60) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    """Corpus, queries (two topic words) and graded qrels (number of query words in the doc)."""
    corpus = tiny_corpus(n_docs)
    queries, qrels = {}, {}
    for i, a in enumerate(TOPICS):
        for b in TOPICS[i + 1 : i + 4]:
            q = f"q-{a}-{b}"
            queries[q] = f"{a} {b}"
            rel = {d: len({a, b} & set(re.findall(r"\w+", t))) for d, t in corpus.items()}
            qrels[q] = {d: g for d, g in rel.items() if g > 0}
    return corpus, queries, qrels


def fake_backends(corpus: dict[str, str], names: tuple[str, str] = ("baseline", "finetuned")) -> dict[str, DictBackend]:
    return {n: DictBackend(corpus, name=n) for n in names}


def run_logged_experiment(db: Path, *, mode: str = "ab", users: int = 60, queries_per_user: int = 6,
                          seed: int = 0, k: int = 5):
    """Serve the toy collection with the real proxy app (in-process) to simulated users; events land in ``db``."""
    corpus, queries, qrels = toy_collection()
    pool = QueryPool.from_mappings(queries, qrels, zipf_s=1.0, seed=seed)
    plans = plan_traffic(pool, users=users, queries_per_user=queries_per_user, sessions_per_user=2, seed=seed)
    cfg = make_config(store_url=f"sqlite:///{db}", mode=mode, k=k)
    app = create_app(cfg, registry=CollectorRegistry(), backends=fake_backends(corpus))
    result = run_simulation(app, plans, pool, make_click_model("dbn", preset="informational"), k=k,
                            concurrency=4, seed=seed, progress=False)
    return cfg, result, pool


@pytest.fixture
def logged_ab(tmp_path: Path):
    db = tmp_path / "events.db"
    cfg, result, pool = run_logged_experiment(db)
    return cfg, result, pool, f"sqlite:///{db}"


@pytest.fixture
def toy():
    """(corpus, queries, qrels) of the toy collection."""
    return toy_collection()


@pytest.fixture
def make_backends():
    """fake_backends(corpus, names) as a fixture (test modules cannot import conftest under importlib mode)."""
    return fake_backends
