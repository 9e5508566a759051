"""IR metrics: hand-worked values and a cross-check against pytrec_eval (trec_eval's own C code) to 1e-6."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pytrec_eval

from abharness.core.irmetrics import IR_METRICS, compute, compute_table, evaluated_query_ids, parse_ir_metric, rank_run
from abharness.errors import ConfigError

ALL = ["recall@10", "precision@10", "mrr@10", "ndcg@10", "map@100", "hit_rate@10", "ndcg@3", "recall@1", "mrr@2"]


def test_hand_worked_graded_case() -> None:
    # q1 ranking: c (grade 1), z (unjudged), a (grade 2); b is judged non-relevant (grade 0).
    qrels = {"q1": {"a": 2, "b": 0, "c": 1}}
    run = {"q1": ["c", "z", "a"]}
    s = compute(run, qrels, ["ndcg@10", "map@100", "mrr@10", "recall@2", "precision@2", "hit_rate@1"])
    dcg = 1 / math.log2(2) + 2 / math.log2(4)  # = 2
    idcg = 2 / math.log2(2) + 1 / math.log2(3)  # ideal order a, c
    assert s["ndcg@10"][0] == pytest.approx(dcg / idcg, abs=1e-12)
    assert s["map@100"][0] == pytest.approx((1 / 1 + 2 / 3) / 2, abs=1e-12)
    assert s["mrr@10"][0] == pytest.approx(1.0)
    assert s["recall@2"][0] == pytest.approx(0.5)
    assert s["precision@2"][0] == pytest.approx(0.5)
    assert s["hit_rate@1"][0] == pytest.approx(1.0)


def test_graded_relevance_changes_ndcg_but_not_binary_metrics() -> None:
    run = {"q": ["x", "y"]}
    high_first = compute(run, {"q": {"x": 3, "y": 1}}, ["ndcg@2", "map@2"])
    low_first = compute(run, {"q": {"x": 1, "y": 3}}, ["ndcg@2", "map@2"])
    assert high_first["ndcg@2"][0] == pytest.approx(1.0)
    assert low_first["ndcg@2"][0] == pytest.approx((1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3)))
    assert high_first["map@2"][0] == low_first["map@2"][0] == pytest.approx(1.0)


def test_mrr_cutoff_and_missing_query_scores_zero() -> None:
    qrels = {"q1": {"d": 1}, "q2": {"e": 1}, "q3": {"f": 0}}
    run = {"q1": ["a", "b", "d"], "other": ["x"]}
    t = compute_table(run, qrels, ["mrr@2", "mrr@3"])
    assert t.query_ids == ("q1", "q2")  # q3 has no relevant doc; "other" has no qrels
    assert list(t.scores["mrr@2"]) == [0.0, 0.0]
    assert t.scores["mrr@3"][0] == pytest.approx(1 / 3)
    assert t.subset(["q2"]).query_ids == ("q2",)


def test_score_ties_follow_trec_eval_rule() -> None:
    assert rank_run({"a": 1.0, "b": 1.0, "c": 2.0}) == ["c", "b", "a"]


def _random_case(rng: np.random.Generator, n_queries: int, n_docs: int, graded: bool, ties: bool):
    docs = [f"d{i:03d}" for i in range(n_docs)]
    qrels, run = {}, {}
    for q in range(n_queries):
        qid = f"q{q}"
        judged = rng.choice(n_docs, size=rng.integers(1, 8), replace=False)
        qrels[qid] = {docs[j]: int(rng.integers(0 if graded else 1, 4 if graded else 2)) for j in judged}
        if rng.random() < 0.1:
            continue  # query missing from the run
        retrieved = rng.choice(n_docs, size=rng.integers(1, 40), replace=False)
        scores = rng.integers(0, 5, size=retrieved.size) if ties else rng.random(retrieved.size)
        run[qid] = {docs[j]: float(s) for j, s in zip(retrieved, scores)}
    return qrels, run


@pytest.mark.parametrize("graded", [False, True])
@pytest.mark.parametrize("ties", [False, True])
def test_matches_pytrec_eval(graded: bool, ties: bool) -> None:
    rng = np.random.default_rng(7 + 2 * graded + ties)
    qrels, run = _random_case(rng, n_queries=60, n_docs=80, graded=graded, ties=ties)
    table = compute_table(run, qrels, ALL)
    assert len(table.query_ids) > 40
    for metric in ALL:
        spec = parse_ir_metric(metric)
        cut_run = run
        if spec.name == "mrr":  # trec_eval's recip_rank has no cutoff: give it the top k only
            cut_run = {q: {d: s for d, s in r.items() if d in rank_run(r)[: spec.k]} for q, r in run.items()}
        evaluator = pytrec_eval.RelevanceEvaluator(
            {q: dict(v) for q, v in qrels.items()}, {spec.trec_eval_measure}
        )
        oracle = evaluator.evaluate(cut_run)
        expected = np.array([oracle.get(q, {}).get(spec.trec_eval_key, 0.0) for q in table.query_ids])
        np.testing.assert_allclose(table.scores[metric], expected, atol=1e-6, err_msg=metric)


def test_perfect_run_scores_one() -> None:
    qrels = {"q": {"a": 3, "b": 2, "c": 1}}
    s = compute({"q": ["a", "b", "c"]}, qrels, ["ndcg@10", "map@100", "recall@3", "mrr@1"])
    for values in s.values():
        assert values[0] == pytest.approx(1.0)


@pytest.mark.parametrize("bad", ["ndcg", "ndcg@0", "ndcg@x", "bleu@10", "", "@10"])
def test_bad_metric_lists_valid_ones(bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_ir_metric(bad)
    for name in IR_METRICS:
        assert f"{name}@k" in str(err.value)
    assert repr(bad) in str(err.value)


def test_parse_is_canonical() -> None:
    assert str(parse_ir_metric(" NDCG@10 ")) == "ndcg@10"
    assert evaluated_query_ids({"b": {"x": 1}, "a": {"y": 2}, "c": {"z": 0}}) == ("a", "b")
