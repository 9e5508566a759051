"""Pure computations of the non-retrieval checks, on embeddings already computed: STS correlation, frozen-
embedding classification, clustering, out-of-domain overfitting flags and the verdict rules.

Every function takes arrays and returns plain, JSON-ready values; I/O and encoding live in ``runner``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from abharness.core.significance import PairedComparison, bootstrap_ci

__all__ = [
    "cosine_rows",
    "sts_scores",
    "classification_scores",
    "mcnemar_exact",
    "clustering_scores",
    "overfitting_flags",
    "significance_verdict",
    "combine_verdicts",
]


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (n, d) arrays."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.pearsonr(x, y).statistic)


def sts_scores(
    gold: np.ndarray, cos_baseline: np.ndarray, cos_candidate: np.ndarray, *, n_resamples: int = 1000,
    alpha: float = 0.05, seed: int = 0,
) -> dict[str, Any]:
    """Spearman and Pearson correlation of cosine vs gold for each model, percentile-bootstrap CIs over pairs,
    and a paired bootstrap CI of the Spearman difference (same resampled pairs for both models; Efron &
    Tibshirani 1993). The difference is called significant when its CI excludes 0."""
    gold = np.asarray(gold, dtype=np.float64)
    out: dict[str, Any] = {"n_pairs": int(gold.size)}
    for name, cos in (("baseline", cos_baseline), ("candidate", cos_candidate)):
        sp_ci = bootstrap_ci(gold.size, lambda i, c=cos: _spearman(gold[i], c[i]), n_resamples=n_resamples,
                             alpha=alpha, seed=seed)
        pe_ci = bootstrap_ci(gold.size, lambda i, c=cos: _pearson(gold[i], c[i]), n_resamples=n_resamples,
                             alpha=alpha, seed=seed)
        out[name] = {
            "spearman": _spearman(gold, cos), "spearman_ci": list(sp_ci),
            "pearson": _pearson(gold, cos), "pearson_ci": list(pe_ci),
        }
    diff_ci = bootstrap_ci(
        gold.size, lambda i: _spearman(gold[i], cos_candidate[i]) - _spearman(gold[i], cos_baseline[i]),
        n_resamples=n_resamples, alpha=alpha, seed=seed,
    )
    out["spearman_delta"] = out["candidate"]["spearman"] - out["baseline"]["spearman"]
    out["spearman_delta_ci"] = list(diff_ci)
    lo, hi = diff_ci
    out["verdict"] = "improved" if lo > 0 else "regressed" if hi < 0 else "no-change"
    return out


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Exact McNemar test (two-sided binomial test on the discordant pairs) for two classifiers scored on the
    same items. Reference: McNemar (1947); Dietterich (1998) recommends it for comparing classifiers."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    only_a = int(np.sum(a & ~b))
    only_b = int(np.sum(~a & b))
    if only_a + only_b == 0:
        return 1.0
    return float(stats.binomtest(only_b, only_a + only_b, 0.5).pvalue)


def classification_scores(
    train_x: Mapping[str, np.ndarray], train_y: Sequence[str], test_x: Mapping[str, np.ndarray],
    test_y: Sequence[str], *, c: float = 1.0, seed: int = 0, alpha: float = 0.05,
) -> dict[str, Any]:
    """Multinomial logistic regression (L2, ``C=c``) fitted on frozen embeddings per model; accuracy and
    macro-F1 on the fixed test split; exact McNemar p-value for the accuracy difference."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    out: dict[str, Any] = {"n_train": len(train_y), "n_test": len(test_y), "labels": sorted(set(train_y))}
    correct = {}
    for name in ("baseline", "candidate"):
        clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
        clf.fit(train_x[name], list(train_y))
        pred = clf.predict(test_x[name])
        correct[name] = pred == np.asarray(test_y)
        out[name] = {
            "accuracy": float(accuracy_score(test_y, pred)),
            "macro_f1": float(f1_score(test_y, pred, average="macro")),
        }
    out["accuracy_delta"] = out["candidate"]["accuracy"] - out["baseline"]["accuracy"]
    out["macro_f1_delta"] = out["candidate"]["macro_f1"] - out["baseline"]["macro_f1"]
    out["p_value"] = mcnemar_exact(correct["baseline"], correct["candidate"])
    out["verdict"] = significance_verdict(out["accuracy_delta"], out["p_value"], alpha)
    return out


def clustering_scores(
    x: Mapping[str, np.ndarray], labels: Sequence[str], *, n_init: int = 10, seed: int = 0
) -> dict[str, Any]:
    """k-means (k = number of gold labels, ``n_init`` restarts, seeded) on unit-normalised embeddings;
    V-measure (Rosenberg & Hirschberg 2007) and adjusted Rand index (Hubert & Arabie 1985) against the labels."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, v_measure_score

    k = len(set(labels))
    out: dict[str, Any] = {"n_items": len(labels), "k": k}
    for name in ("baseline", "candidate"):
        emb = x[name] / np.linalg.norm(x[name], axis=1, keepdims=True)
        pred = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(emb)
        out[name] = {
            "v_measure": float(v_measure_score(labels, pred)),
            "adjusted_rand": float(adjusted_rand_score(labels, pred)),
        }
    out["v_measure_delta"] = out["candidate"]["v_measure"] - out["baseline"]["v_measure"]
    out["adjusted_rand_delta"] = out["candidate"]["adjusted_rand"] - out["baseline"]["adjusted_rand"]
    return out


def significance_verdict(delta: float, p_value: float, alpha: float) -> str:
    """"improved"/"regressed" when the (adjusted) p-value is <= alpha, by the sign of delta; else "no-change"."""
    if p_value <= alpha and delta > 0:
        return "improved"
    if p_value <= alpha and delta < 0:
        return "regressed"
    return "no-change"


def combine_verdicts(verdicts: Sequence[str]) -> str:
    """One verdict for several sub-results: regressed and improved together give "mixed"."""
    vs = set(verdicts)
    if "improved" in vs and "regressed" in vs:
        return "mixed"
    if "regressed" in vs:
        return "regressed"
    if "improved" in vs:
        return "improved"
    return "no-change"


def overfitting_flags(
    in_domain: PairedComparison, out_of_domain: Mapping[str, PairedComparison], *, margin: float
) -> dict[str, Any]:
    """Flag each out-of-domain collection whose primary-metric change (candidate - baseline) is below
    ``-margin``; the verdict is "warn" when any is flagged (the in-domain gain did not generalise), else "pass"."""
    sets = {}
    for name, comp in out_of_domain.items():
        sets[name] = {
            "baseline": comp.baseline, "candidate": comp.candidate, "delta": comp.delta,
            "ci": [comp.ci_low, comp.ci_high], "p_value": comp.p_value, "n_queries": comp.n,
            "flagged": bool(comp.delta < -margin),
        }
    flagged = [n for n, s in sets.items() if s["flagged"]]
    return {
        "metric": in_domain.metric, "margin": margin, "in_domain_delta": in_domain.delta, "sets": sets,
        "flagged": flagged, "verdict": "warn" if flagged else "pass",
    }
