"""Pure pieces of the evaluation: geometry, probes, leakage, overfitting flag, checks, suite parsing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar

from abharness.core.significance import compare_paired
from abharness.data.hashing import text_sha256
from abharness.errors import ConfigError, DataError
from abharness.evaluation import checks, geometry
from abharness.evaluation.leakage import find_leaks
from abharness.evaluation.probes import default_probe_file, load_probes, score_probes
from abharness.evaluation.suite import load_suite


# ---------------------------------------------------------------- geometry (Wang & Isola 2020)
def test_alignment_hand_worked() -> None:
    e = np.eye(3)
    assert geometry.alignment(e, e) == pytest.approx(0.0)
    assert geometry.alignment(e[:2], e[1:3]) == pytest.approx(2.0)  # orthogonal unit vectors: ||u-v||^2 = 2
    assert geometry.alignment(e[:1], -e[:1]) == pytest.approx(4.0)


def test_uniformity_matches_brute_force_and_antipodes() -> None:
    assert geometry.uniformity(np.array([[1.0, 0], [-1.0, 0]])) == pytest.approx(-8.0)  # log exp(-2 * 4)
    rng = np.random.default_rng(0)
    x = geometry.normalize_rows(rng.normal(size=(30, 5)))
    brute = np.log(np.mean([np.exp(-2 * np.sum((x[i] - x[j]) ** 2)) for i in range(30) for j in range(i + 1, 30)]))
    assert geometry.uniformity(x) == pytest.approx(brute, abs=1e-10)


def test_anisotropy_extremes() -> None:
    assert geometry.anisotropy(np.ones((10, 4))) == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    assert abs(geometry.anisotropy(rng.normal(size=(2000, 64)), n_pairs=4000)) < 0.02
    with pytest.raises(ConfigError):
        geometry.anisotropy(np.ones((1, 3)))


# ---------------------------------------------------------------- probes
def test_default_probe_file_has_both_kinds() -> None:
    pairs = load_probes(None)
    assert default_probe_file().is_file()
    kinds = {p.expectation for p in pairs}
    assert kinds == {"closer", "apart"} and len(pairs) >= 20
    assert any(p.a == "heart attack" and p.b == "myocardial infarction" for p in pairs)


@pytest.mark.parametrize(
    ("line", "match"),
    [("closer\tonly two", "expected 3 TAB-separated"), ("nearer\ta\tb", "not one of closer, apart"),
     ("apart\t\tb", "empty text"), ("closer a b", "expected 3 TAB-separated")],
)
def test_bad_probe_line_names_file_and_line(tmp_path: Path, line: str, match: str) -> None:
    f = tmp_path / "p.tsv"
    f.write_text("# comment\ncloser\theart attack\tmyocardial infarction\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=match) as err:
        load_probes(f)
    assert f"{f}:3" in str(err.value)


def test_missing_probe_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_probes(tmp_path / "nope.tsv")


def test_score_probes_direction() -> None:
    from abharness.evaluation.probes import ProbePair

    pairs = [ProbePair("closer", "a", "b"), ProbePair("apart", "c", "d")]
    e = np.eye(2)
    tilt = geometry.normalize_rows(np.array([[1.0, 1.0], [1.0, 1.0]]))
    # baseline: both pairs orthogonal (cos 0); candidate: both pairs at cos ~0.707
    out = score_probes(pairs, e, e[::-1], e, tilt)
    assert out[0].as_expected and not out[1].as_expected
    assert out[0].cos_baseline == pytest.approx(0.0) and out[0].cos_candidate == pytest.approx(2**-0.5)


# ---------------------------------------------------------------- leakage
TEST_Q = {"t1": "Aspirin lowers the risk of stroke.", "t2": "Vitamin D cures influenza.",
          "t3": "Statins reduce LDL cholesterol.", "t4": "Smoking causes lung cancer."}
QRELS = {"t1": {"d1": 1}, "t2": {"d2": 1}, "t3": {"d3": 1}, "t4": {"d4": 1}}


def test_leakage_finds_planted_exact_and_near() -> None:
    # t1 planted exactly (different case and spacing: normalised hash still matches); t3 planted as a near copy.
    hashes = [text_sha256("  ASPIRIN lowers the   risk of stroke. "), text_sha256("unrelated claim")]
    train = [("r1", "Statins reduce LDL-cholesterol levels."), ("r2", "unrelated claim")]
    rng = np.random.default_rng(0)
    test_emb = geometry.normalize_rows(rng.normal(size=(4, 16)))
    train_emb = np.vstack([test_emb[2] + 0.05 * rng.normal(size=16), rng.normal(size=16)])
    res = find_leaks(TEST_Q, QRELS, train_text_hashes=hashes, train_doc_ids=["d4", "x"], train_queries=train,
                     test_embeddings=test_emb, train_embeddings=train_emb, near_duplicate_cosine=0.95)
    assert [c.query_id for c in res.exact] == ["t1"]
    assert [(c.query_id, c.train_query_id) for c in res.near] == [("t3", "r1")]
    assert res.near[0].cosine >= 0.95
    assert res.leaked_query_ids == ("t1", "t3") and res.leaked_fraction == 0.5 and res.failed
    assert res.doc_overlap_queries == ("t4",) and res.doc_overlap_docs == 1


def test_leakage_clean_manifest_finds_nothing() -> None:
    rng = np.random.default_rng(1)
    test_emb = geometry.normalize_rows(rng.normal(size=(4, 16)))
    train_emb = geometry.normalize_rows(rng.normal(size=(3, 16)))
    res = find_leaks(TEST_Q, QRELS, train_text_hashes=[text_sha256(f"other {i}") for i in range(3)],
                     train_doc_ids=["z"], train_queries=[(f"r{i}", f"other {i}") for i in range(3)],
                     test_embeddings=test_emb, train_embeddings=train_emb, max_leaked_fraction=0.0)
    assert res.exact == () and res.near == () and not res.failed and res.doc_overlap_queries == ()


def test_leakage_threshold() -> None:
    res = find_leaks(TEST_Q, QRELS, train_text_hashes=[text_sha256(TEST_Q["t2"])], max_leaked_fraction=0.3)
    assert res.leaked_fraction == 0.25 and not res.failed
    assert any("near-duplicate search skipped" in n for n in res.notes)


# ---------------------------------------------------------------- overfitting
def test_overfitting_flag_fires_on_planted_drop() -> None:
    rng = np.random.default_rng(2)
    base = rng.random(50)
    in_dom = compare_paired("ndcg@10", base, base + 0.1, n_resamples=200)
    ood = {"steady": compare_paired("ndcg@10", base, base + 0.005, n_resamples=200),
           "dropped": compare_paired("ndcg@10", base, base - 0.08, n_resamples=200)}
    out = checks.overfitting_flags(in_dom, ood, margin=0.02)
    assert out["flagged"] == ["dropped"] and out["verdict"] == "warn"
    assert out["sets"]["dropped"]["delta"] == pytest.approx(-0.08)
    calm = checks.overfitting_flags(in_dom, {"steady": ood["steady"]}, margin=0.02)
    assert calm["flagged"] == [] and calm["verdict"] == "pass"


# ---------------------------------------------------------------- checks
def test_mcnemar_matches_statsmodels() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random(200) < 0.7, rng.random(200) < 0.78
    table = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
    assert checks.mcnemar_exact(a, b) == pytest.approx(mcnemar(table, exact=True).pvalue, abs=1e-12)


def test_sts_scores_match_scipy_and_detect_improvement() -> None:
    rng = np.random.default_rng(4)
    gold = rng.uniform(0, 5, 300)
    weak, strong = gold + rng.normal(0, 3, 300), gold + rng.normal(0, 0.5, 300)
    out = checks.sts_scores(gold, weak, strong, n_resamples=300)
    assert out["baseline"]["spearman"] == pytest.approx(stats.spearmanr(gold, weak).statistic)
    assert out["candidate"]["pearson"] == pytest.approx(stats.pearsonr(gold, strong).statistic)
    assert out["verdict"] == "improved" and out["spearman_delta_ci"][0] > 0
    assert checks.sts_scores(gold, strong, strong, n_resamples=100)["verdict"] == "no-change"


def test_verdict_rules() -> None:
    assert checks.significance_verdict(0.1, 0.01, 0.05) == "improved"
    assert checks.significance_verdict(-0.1, 0.01, 0.05) == "regressed"
    assert checks.significance_verdict(-0.1, 0.2, 0.05) == "no-change"
    assert checks.combine_verdicts(["improved", "regressed"]) == "mixed"
    assert checks.combine_verdicts(["no-change", "improved"]) == "improved"


def test_classification_and_clustering_on_separable_data() -> None:
    rng = np.random.default_rng(5)
    labels = [str(i % 3) for i in range(150)]
    centers = rng.normal(size=(3, 8)) * 5
    good = np.array([centers[int(l)] for l in labels]) + rng.normal(size=(150, 8))
    noise = rng.normal(size=(150, 8))
    out = checks.classification_scores({"baseline": noise[:100], "candidate": good[:100]}, labels[:100],
                                       {"baseline": noise[100:], "candidate": good[100:]}, labels[100:])
    assert out["candidate"]["accuracy"] > 0.9 > out["baseline"]["accuracy"] and out["verdict"] == "improved"
    cl = checks.clustering_scores({"baseline": noise, "candidate": good}, labels, n_init=3)
    assert cl["candidate"]["v_measure"] > 0.8 and cl["baseline"]["adjusted_rand"] < 0.1


# ---------------------------------------------------------------- suite
def test_suite_defaults_and_errors(tmp_path: Path) -> None:
    s = load_suite(None)
    assert s.retrieval.metrics == ("recall@10", "mrr@10", "ndcg@10", "map@100")
    assert s.enabled_checks() == ("retrieval", "sts", "classification", "clustering", "geometry", "probes",
                                  "leakage", "overfitting", "maps")
    bad = tmp_path / "s.yaml"
    bad.write_text("retrieval:\n  metrics: [ndcg@10, bleu@4]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown metric 'bleu@4'.*recall@k"):
        load_suite(bad)
    bad.write_text("retreival: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="retreival"):
        load_suite(bad)
    bad.write_text("leakage: {near_duplicate_cosine: 3}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="leakage.near_duplicate_cosine"):
        load_suite(bad)
    bad.write_text("a: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_suite(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_suite(tmp_path / "missing.yaml")
    ok = tmp_path / "ok.yaml"
    ok.write_text("maps: {method: tsne, sample: 50}\nsts: {enabled: false}\n", encoding="utf-8")
    s = load_suite(ok)
    assert s.maps.method == "tsne" and "sts" not in s.enabled_checks()
