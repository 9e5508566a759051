"""Simulated traffic plans (pure, seeded): which user issues which query in which session.

- Query popularity is Zipf: the queries of a test split are put in a seeded random order and the query at
  popularity rank i is drawn with probability proportional to 1 / i^s (``zipf_s``; s = 1 is classic Zipf).
- Users come back: each user has ``sessions_per_user`` sessions; within and across sessions a user re-issues one
  of their own earlier queries with probability ``repeat_prob`` (so the unit of randomisation, the user, carries
  several correlated impressions: unit clustering matters for the statistics).
- The unit id is the user id (``unit="user"``) or the session id (``unit="session"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from abharness.errors import ConfigError, DataError

__all__ = ["QueryPool", "PlannedSearch", "UserPlan", "plan_traffic"]


@dataclass(frozen=True)
class QueryPool:
    """Queries with their graded qrels and Zipf popularity weights (``weights`` sums to 1)."""

    query_ids: tuple[str, ...]
    texts: tuple[str, ...]
    qrels: Mapping[str, Mapping[str, int]]
    weights: np.ndarray

    @classmethod
    def from_mappings(
        cls,
        queries: Mapping[str, str],
        qrels: Mapping[str, Mapping[str, int]],
        *,
        zipf_s: float = 1.0,
        seed: int = 0,
        max_queries: int | None = None,
    ) -> QueryPool:
        """Pool of the queries that have qrels, in a seeded popularity order with Zipf(s) weights."""
        if zipf_s < 0 or not np.isfinite(zipf_s):
            raise ConfigError(f"zipf_s must be a finite number >= 0, got {zipf_s}")
        ids = sorted(q for q in queries if q in qrels and qrels[q])
        if not ids:
            raise DataError("no query of the split has qrels; choose a split with relevance judgements (e.g. test)")
        rng = np.random.default_rng(seed)
        order = [ids[i] for i in rng.permutation(len(ids))]
        if max_queries is not None:
            order = order[:max_queries]
        w = 1.0 / np.arange(1, len(order) + 1) ** zipf_s
        return cls(
            query_ids=tuple(order),
            texts=tuple(queries[q] for q in order),
            qrels={q: dict(qrels[q]) for q in order},
            weights=w / w.sum(),
        )

    @classmethod
    def from_dataset(cls, dataset, *, zipf_s: float = 1.0, seed: int = 0, max_queries: int | None = None) -> QueryPool:
        """Pool from a ``RetrievalDataset`` (its split's queries and qrels)."""
        return cls.from_mappings(dataset.queries, dataset.qrels, zipf_s=zipf_s, seed=seed, max_queries=max_queries)

    def __len__(self) -> int:
        return len(self.query_ids)

    def grades(self, query_id: str, doc_ids: list[str], k: int) -> np.ndarray:
        """Grade row for a shown list: qrels grade per doc (0 when unjudged), -1 padding up to k."""
        rel = self.qrels.get(query_id, {})
        row = np.full(k, -1, dtype=np.int64)
        for i, d in enumerate(doc_ids[:k]):
            row[i] = int(rel.get(d, 0))
        return row

    @property
    def max_grade(self) -> int:
        return max((g for r in self.qrels.values() for g in r.values()), default=1)


@dataclass(frozen=True, slots=True)
class PlannedSearch:
    user: int
    session: int
    unit_id: str
    query_index: int


@dataclass(frozen=True, slots=True)
class UserPlan:
    user: int
    searches: tuple[PlannedSearch, ...]


def plan_traffic(
    pool: QueryPool,
    *,
    users: int,
    queries_per_user: int,
    sessions_per_user: int = 3,
    repeat_prob: float = 0.3,
    unit: Literal["user", "session"] = "user",
    seed: int = 0,
    user_offset: int = 0,
) -> list[UserPlan]:
    """A deterministic plan: ``users`` users, each issuing ``queries_per_user`` searches spread over sessions."""
    if users < 1 or queries_per_user < 1 or sessions_per_user < 1:
        raise ConfigError(
            f"users, queries_per_user and sessions_per_user must be >= 1, got {users}, {queries_per_user}, "
            f"{sessions_per_user}"
        )
    if not 0.0 <= repeat_prob <= 1.0:
        raise ConfigError(f"repeat_prob must lie in [0, 1], got {repeat_prob}")
    if unit not in ("user", "session"):
        raise ConfigError(f"unit must be 'user' or 'session', got {unit!r}")
    rng = np.random.default_rng(seed)
    plans = []
    for u in range(user_offset, user_offset + users):
        fresh = rng.choice(len(pool), size=queries_per_user, p=pool.weights)
        repeat = rng.random(queries_per_user) < repeat_prob
        pick = rng.random(queries_per_user)
        session_of = np.sort(rng.integers(0, sessions_per_user, size=queries_per_user))
        history: list[int] = []
        searches = []
        for j in range(queries_per_user):
            q = history[int(pick[j] * len(history))] if (repeat[j] and history) else int(fresh[j])
            history.append(q)
            s = int(session_of[j])
            unit_id = f"user-{u}" if unit == "user" else f"user-{u}-s{s}"
            searches.append(PlannedSearch(user=u, session=s, unit_id=unit_id, query_index=q))
        plans.append(UserPlan(user=u, searches=tuple(searches)))
    return plans
