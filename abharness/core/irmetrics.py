"""Offline IR metrics over a run and graded qrels, as strings like ``"ndcg@10"``: parsed once, computed by ranx.

The online A/B ratio metrics (CTR, MRR of clicks, ...) are another family: ``OnlineMetricSpec`` in
:mod:`abharness.core.stats.metrics`.

Pure core: numbers in, numbers out. No I/O, no clock.

Conventions (identical to trec_eval, and cross-checked against ``pytrec_eval`` in the tests to 1e-6):

* A *run* maps query id -> ranked doc ids (best first), or query id -> {doc id: score}. Scores are turned into a
  ranking by descending score, ties broken by doc id *descending* (trec_eval's rule), so the order is
  deterministic. Ranked lists are used as given.
* *Qrels* map query id -> {doc id: grade}; grade >= 1 is relevant. Graded relevance is respected by nDCG
  (linear gain = grade, Järvelin & Kekäläinen 2002, as trec_eval's ``ndcg_cut``); the other metrics are binary.
* Queries evaluated: every qrels query with at least one relevant document, in sorted id order
  (``evaluated_query_ids``). A query missing from the run scores 0. Run queries without qrels are ignored.

Metrics (``IR_METRICS`` is the one table the parser and the error messages use):

* ``recall@k``    |relevant in top k| / |relevant|                                  (trec_eval ``recall_k``)
* ``precision@k`` |relevant in top k| / k                                           (trec_eval ``P_k``)
* ``mrr@k``       1 / rank of the first relevant document within the top k, else 0  (``recip_rank`` on the top k)
* ``ndcg@k``      DCG@k / IDCG@k, DCG = sum_i grade_i / log2(i + 1)                 (trec_eval ``ndcg_cut_k``)
* ``map@k``       sum over relevant d ranked <= k of precision@rank(d), / |relevant| (trec_eval ``map_cut_k``)
* ``hit_rate@k``  1 if any relevant document is in the top k, else 0                (trec_eval ``success_k``)
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from abharness.errors import ConfigError

__all__ = [
    "IR_METRICS",
    "IRMetricSpec",
    "MetricTable",
    "parse_ir_metric",
    "parse_ir_metrics",
    "evaluated_query_ids",
    "rank_run",
    "compute",
    "compute_table",
]

# name -> (ranx metric name, trec_eval measure family, one-line description)
IR_METRICS: dict[str, tuple[str, str, str]] = {
    "recall": ("recall", "recall", "fraction of the relevant documents found in the top k"),
    "precision": ("precision", "P", "fraction of the top k that is relevant"),
    "mrr": ("mrr", "recip_rank", "1 / rank of the first relevant document in the top k"),
    "ndcg": ("ndcg", "ndcg_cut", "normalised discounted cumulative gain at k (graded, linear gain)"),
    "map": ("map", "map_cut", "average precision over the top k"),
    "hit_rate": ("hit_rate", "success", "1 if any relevant document is in the top k"),
}

Run = Mapping[str, Sequence[str]] | Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]


def _valid_forms() -> str:
    return ", ".join(f"{name}@k" for name in IR_METRICS)


@dataclass(frozen=True, slots=True, order=True)
class IRMetricSpec:
    """A parsed offline IR metric: ``name`` from ``IR_METRICS`` and a cutoff ``k`` >= 1."""

    name: str
    k: int

    def __str__(self) -> str:
        return f"{self.name}@{self.k}"

    @property
    def ranx_name(self) -> str:
        return f"{IR_METRICS[self.name][0]}@{self.k}"

    @property
    def trec_eval_measure(self) -> str:
        """The pytrec_eval measure giving the same number (``recip_rank`` must be fed the run cut at k)."""
        family = IR_METRICS[self.name][1]
        return family if family == "recip_rank" else f"{family}.{self.k}"

    @property
    def trec_eval_key(self) -> str:
        family = IR_METRICS[self.name][1]
        return family if family == "recip_rank" else f"{family}_{self.k}"


def parse_ir_metric(spec: str | IRMetricSpec) -> IRMetricSpec:
    """Parse ``"ndcg@10"`` into ``IRMetricSpec("ndcg", 10)``; raise ``ConfigError`` listing the valid forms."""
    if isinstance(spec, IRMetricSpec):
        return spec
    if not isinstance(spec, str):
        raise ConfigError(f"metric {spec!r} is not a string; use one of: {_valid_forms()} (e.g. 'ndcg@10')")
    text = spec.strip().lower()
    name, sep, k_text = text.partition("@")
    if name not in IR_METRICS:
        raise ConfigError(f"unknown metric {spec!r}; valid metrics are {_valid_forms()} (e.g. 'ndcg@10')")
    if not sep or not k_text.isdigit() or int(k_text) < 1:
        raise ConfigError(
            f"metric {spec!r} needs a cutoff k >= 1 after '@', e.g. '{name}@10'; valid forms: {_valid_forms()}"
        )
    return IRMetricSpec(name, int(k_text))


def parse_ir_metrics(specs: Iterable[str | IRMetricSpec]) -> tuple[IRMetricSpec, ...]:
    """Parse several metric strings, keeping order and dropping duplicates."""
    out: list[IRMetricSpec] = []
    for spec in specs:
        parsed = parse_ir_metric(spec)
        if parsed not in out:
            out.append(parsed)
    if not out:
        raise ConfigError(f"no metrics given; choose from {_valid_forms()}")
    return tuple(out)


def evaluated_query_ids(qrels: Qrels) -> tuple[str, ...]:
    """The queries a run is scored on: those with at least one document of grade >= 1, sorted by id."""
    return tuple(sorted(q for q, docs in qrels.items() if any(g >= 1 for g in docs.values())))


def rank_run(results: Sequence[str] | Mapping[str, float]) -> list[str]:
    """A ranked list of doc ids: a sequence is kept as is; a score mapping is sorted by (score desc, id desc)."""
    if isinstance(results, Mapping):
        return [d for d, _ in sorted(results.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]
    return list(results)


@dataclass(frozen=True)
class MetricTable:
    """Per-query metric values: ``scores[str(spec)][i]`` belongs to ``query_ids[i]``."""

    query_ids: tuple[str, ...]
    scores: Mapping[str, np.ndarray]

    def mean(self, metric: str) -> float:
        values = self.scores[str(parse_ir_metric(metric))]
        return float(values.mean()) if values.size else 0.0

    def subset(self, keep: Iterable[str]) -> MetricTable:
        """Only the given queries (order kept)."""
        wanted = set(keep)
        mask = np.array([q in wanted for q in self.query_ids], dtype=bool)
        return MetricTable(
            tuple(q for q, m in zip(self.query_ids, mask) if m),
            {name: values[mask] for name, values in self.scores.items()},
        )


def compute_table(run: Run, qrels: Qrels, metrics: Iterable[str | IRMetricSpec]) -> MetricTable:
    """Per-query values of ``metrics`` for ``run`` against ``qrels`` (see the module docstring for conventions).

    Backed by ranx's numba kernels (Bassani, ECIR 2022); doc ids are mapped to integers here, so no
    string hashing is involved and the query order is the one of ``evaluated_query_ids``.
    """
    from numba.core.errors import NumbaTypeSafetyWarning  # heavy imports (numba); kept out of import time
    from numba.typed import List as TypedList
    from ranx.metrics import metric_switch

    specs = parse_ir_metrics(metrics)
    query_ids = evaluated_query_ids(qrels)
    if not query_ids:
        return MetricTable((), {str(s): np.zeros(0) for s in specs})
    vocab: dict[str, int] = {}

    def idx(doc_id: str) -> int:
        return vocab.setdefault(doc_id, len(vocab) + 1)

    qrels_arrays = []
    run_arrays = []
    for q in query_ids:
        judged = sorted(((idx(d), float(g)) for d, g in qrels[q].items() if g > 0), key=lambda t: -t[1])
        qrels_arrays.append(np.array(judged, dtype=np.float64).reshape(-1, 2))
        ranked = rank_run(run.get(q, ()))  # type: ignore[arg-type]
        seen: set[str] = set()
        unique = [d for d in ranked if not (d in seen or seen.add(d))]  # a doc counts once, at its best rank
        n = len(unique)
        rows = [(idx(d), float(n - i)) for i, d in enumerate(unique)]
        run_arrays.append(np.array(rows, dtype=np.float64).reshape(-1, 2))
    typed_qrels, typed_run = TypedList(qrels_arrays), TypedList(run_arrays)
    scores: dict[str, np.ndarray] = {}
    with warnings.catch_warnings():
        # ranx's parallel kernels trigger a harmless numba compile-time cast warning (uint64 loop index).
        warnings.simplefilter("ignore", NumbaTypeSafetyWarning)
        for s in specs:
            values = metric_switch(IR_METRICS[s.name][0])(typed_qrels, typed_run, s.k, 1)
            scores[str(s)] = np.asarray(values, dtype=np.float64)
    return MetricTable(query_ids, scores)


def compute(run: Run, qrels: Qrels, metrics: Iterable[str | IRMetricSpec]) -> dict[str, np.ndarray]:
    """Per-query metric arrays keyed by the canonical metric string, aligned to ``evaluated_query_ids(qrels)``."""
    return dict(compute_table(run, qrels, metrics).scores)
