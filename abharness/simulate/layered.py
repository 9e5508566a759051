"""Several experiments at once on the SciFact simulator, with planted effects (issue 16, item 6; docs/analysis.md).

The traffic is the simulator's (``abharness.simulate.population``: SciFact test queries with their qrels, Zipf
popularity, users re-issuing their own queries) and a position-based click model (``PositionBasedModel``,
examination 1/r, Hofmann et al.'s "informational" attractiveness). The served ranking of a query is a TF-IDF
ranking of the SciFact corpus (scikit-learn; no encoder, so the simulation runs in seconds).

The experiment file (``sim_config``), assigned with ``Design.assign`` exactly as the proxy assigns:

* layer ``main`` (the backend): experiment ``ranker``, ``baseline`` (control) vs ``candidate``, 50/50 on all buckets;
* layer ``depth`` (owns ``k``, default 10): three mutually exclusive experiments, ``k5`` on buckets [0, 5000)
  (k 10 vs 5), ``k8`` on [5000, 7500) (10 vs 8) and ``k12-de`` on [7500, 9500), targeted at ``locale: de``,
  (10 vs 12, weights 0.6/0.4); [9500, 10000) is free;
* a global holdout of 5 % (pseudo-experiment ``holdout``).

Planted effects. The candidate backend multiplies the click probability of ranks 1-5 by ``1 + backend_lift``; the k
experiments change how many results are shown. With ``interaction_lift`` > 0 the candidate also multiplies ranks 6
and below by ``1 + interaction_lift``, so removing ranks 6-10 (``k5``) costs more clicks under the candidate: a
planted interaction between ``ranker`` and ``k5``. Without it the two effects add up exactly on clicks per query
(PBM clicks at different ranks are independent, and the candidate changes only ranks 1-5, which k5 keeps). The
planted (true) effect of each experiment is computed in closed form from the click probabilities, the Zipf weights
and the design's bucket shares (``planted_effects``); it is what the estimator targets, clicks per query being the
ratio sum(clicks) / sum(searches).

The data go through the storage convention of a layered proxy (one impression row per enrolled experiment, ids
``<search>`` in the main layer's experiment and ``<search>~<experiment>`` elsewhere, context ``layer`` and
``impression``; a holdout row per search; clicks credited to every row) into a real store, and are analysed from
it with ``abharness.analysis.analyze``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from abharness.core.clickmodels import GradeMap, PositionBasedModel
from abharness.core.events import Click, Event, Impression, ShownResult
from abharness.core.layers import row_impression_id
from abharness.simulate.population import QueryPool
from abharness.simulate.sensitivity import draw_unit_queries

__all__ = ["SciFactLists", "scifact_lists", "sim_config", "SimSpec", "sim_config_dict", "Traffic", "simulate_traffic",
           "planted_effects", "write_traffic", "LOCALES", "DEPTH", "Recovered", "ANALYSED", "analyse_store", "run",
           "effects_table", "click_probabilities", "interaction_in_memory", "toy_lists", "coverage_in_memory",
           "estimates_in_memory"]

DEPTH = 12  # the largest k any arm shows
LOCALES = (("en", 0.6), ("de", 0.25), ("fr", 0.15))
MAIN_ID = "ranker"
HOLDOUT_ID = "holdout"


@dataclass(frozen=True)
class SciFactLists:
    """The query pool and each query's TF-IDF top ``DEPTH`` documents with their qrels grades."""

    pool: QueryPool
    docs: tuple[tuple[str, ...], ...]  # aligned with pool.query_ids
    grades: np.ndarray  # (Q, DEPTH), 0 = not relevant


def scifact_lists(scifact_dir: Path, *, split: str = "test", zipf_s: float = 1.0, seed: int = 0) -> SciFactLists:
    """Rank the SciFact corpus for every judged query of ``split`` with TF-IDF (cosine), top ``DEPTH``."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from abharness.data import load_beir

    ds = load_beir(scifact_dir, split)
    pool = QueryPool.from_mappings(ds.queries, ds.qrels, zipf_s=zipf_s, seed=seed)
    doc_ids = sorted(ds.corpus)
    vec = TfidfVectorizer(sublinear_tf=True, stop_words="english")
    d = vec.fit_transform([f"{ds.corpus[i].title} {ds.corpus[i].text}" for i in doc_ids])
    q = vec.transform(list(pool.texts))
    scores = (q @ d.T).toarray()
    top = np.argsort(-scores, axis=1, kind="stable")[:, :DEPTH]
    docs = tuple(tuple(doc_ids[j] for j in row) for row in top)
    grades = np.stack([pool.grades(qid, list(ds_), DEPTH) for qid, ds_ in zip(pool.query_ids, docs)])
    return SciFactLists(pool, docs, np.maximum(grades, 0))


def toy_lists(n_queries: int = 40, seed: int = 0) -> SciFactLists:
    """A synthetic stand-in for ``scifact_lists`` (binary grades, relevance thinning with rank) for fast tests."""
    rng = np.random.default_rng(seed)
    queries = {f"q{i}": f"query {i}" for i in range(n_queries)}
    docs = tuple(tuple(f"d{i}-{r}" for r in range(DEPTH)) for i in range(n_queries))
    grades = (rng.random((n_queries, DEPTH)) < np.linspace(0.6, 0.1, DEPTH)).astype(np.int64)
    grades[:, 0] = 1
    qrels = {f"q{i}": {docs[i][r]: 1 for r in range(DEPTH) if grades[i, r]} for i in range(n_queries)}
    pool = QueryPool.from_mappings(queries, qrels, seed=seed)
    order = [int(q[1:]) for q in pool.query_ids]
    return SciFactLists(pool, tuple(docs[i] for i in order), grades[order])


def sim_config_dict(*, holdout_share: float = 0.05) -> dict[str, Any]:
    """The simulation's experiment file as a mapping (backends are placeholders, never opened)."""

    def exp(eid: str, lo: int, hi: int, k: int, weights: tuple[float, float] = (0.5, 0.5),
            targeting: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {"experiment_id": eid, "buckets": [lo, hi], "targeting": dict(targeting or {}),
                "arms": [{"name": "k10", "role": "control", "params": {"k": 10}},
                         {"name": f"k{k}", "role": "treatment", "params": {"k": k}}],
                "weights": {"k10": weights[0], f"k{k}": weights[1]}}

    return {
        "experiment_id": MAIN_ID, "salt": "sim-ranker", "unit": "user", "mode": "ab", "k": 10,
        "arms": [{"name": "baseline", "role": "control", "backend": {"kind": "local", "index": "idx/a", "model": "m"}},
                 {"name": "candidate", "role": "treatment",
                  "backend": {"kind": "local", "index": "idx/b", "model": "m"}}],
        "weights": {"baseline": 0.5, "candidate": 0.5},
        "layers": [{"name": "depth", "salt": "sim-depth", "owns": ["k"], "experiments": [
            exp("k5", 0, 5000, 5), exp("k8", 5000, 7500, 8),
            exp("k12-de", 7500, 9500, 12, (0.6, 0.4), {"locale": "de"})]}],
        "holdout": {"salt": "sim-holdout", "share": holdout_share},
    }


def sim_config(*, holdout_share: float = 0.05) -> Any:
    """``sim_config_dict`` as an ``ExperimentConfig`` for analysis (insecure_dev: it is never served)."""
    from abharness.config import parse_config

    return parse_config({**sim_config_dict(holdout_share=holdout_share), "insecure_dev": True,
                         "store_url": "sqlite:///:memory:"}, source="simulation")


@dataclass(frozen=True)
class SimSpec:
    """Size and planted effects of one simulated run."""

    units: int = 12_000
    searches_per_unit: int = 4
    repeat_prob: float = 0.3
    backend_lift: float = 0.15
    interaction_lift: float = 0.0
    seed: int = 0


def click_probabilities(lists: SciFactLists, spec: SimSpec) -> dict[str, np.ndarray]:
    """(Q, DEPTH) click probability per rank under each backend: PBM, candidate lifted as planted."""
    pbm = PositionBasedModel(GradeMap.preset("informational", 1), eta=1.0)
    base = pbm.click_probabilities(np.minimum(lists.grades, 1))
    mult = np.ones(DEPTH)
    mult[:5] = 1.0 + spec.backend_lift
    mult[5:] = 1.0 + spec.interaction_lift
    return {"baseline": base, "candidate": np.clip(base * mult[None, :], 0.0, 1.0)}


def _mu(probs: Mapping[str, np.ndarray], weights: np.ndarray, backend: str, k: int) -> float:
    """Expected clicks per search under ``backend`` showing ``k`` results (queries drawn by ``weights``)."""
    return float(weights @ probs[backend][:, :k].sum(axis=1))


def planted_effects(lists: SciFactLists, spec: SimSpec, config: Any, locale_de: float = LOCALES[1][1]
                    ) -> dict[str, float]:
    """True effects on clicks per query (treatment - control) of ``ranker``, ``k5``, ``k8``, ``k12-de``, the holdout
    (rest - holdout) and the ranker x k5 interaction, from the closed form and the design's shares."""
    probs = click_probabilities(lists, spec)
    w = lists.pool.weights
    mu = {(b, k): _mu(probs, w, b, k) for b in probs for k in (5, 8, 10, 12)}
    # k among units outside the holdout: the depth layer's bucket shares, arm weights and the de share
    pk = {5: 0.5 * 0.5, 8: 0.25 * 0.5, 12: 0.2 * locale_de * 0.4}
    pk[10] = 1.0 - sum(pk.values())
    ranker = sum(p * (mu[("candidate", k)] - mu[("baseline", k)]) for k, p in pk.items())
    rest = sum(0.5 * p * (mu[("baseline", k)] + mu[("candidate", k)]) for k, p in pk.items())
    out = {"ranker": ranker, HOLDOUT_ID: rest - mu[("baseline", 10)]}
    for eid, k in (("k5", 5), ("k8", 8), ("k12-de", 12)):
        out[eid] = 0.5 * sum(mu[(b, k)] - mu[(b, 10)] for b in probs)
    out["interaction ranker x k5"] = ((mu[("candidate", 5)] - mu[("candidate", 10)])
                                      - (mu[("baseline", 5)] - mu[("baseline", 10)]))
    return out


@dataclass(frozen=True)
class Traffic:
    """Every simulated search: who, which query, what the design decided, and which ranks were clicked."""

    unit_ids: tuple[str, ...]
    locale: np.ndarray  # (U,)
    holdout: np.ndarray  # (U,) bool
    enrollments: tuple[tuple[tuple[str, str, str], ...], ...]  # per unit: (layer, experiment, arm)
    backend: np.ndarray  # (U,) served backend
    k: np.ndarray  # (U,)
    queries: np.ndarray  # (U, m) query index
    clicks: np.ndarray  # (U, m, DEPTH) bool, False beyond k


def simulate_traffic(lists: SciFactLists, spec: SimSpec, config: Any) -> Traffic:
    """Assign ``spec.units`` units with ``Design.assign`` (context: a locale) and draw their searches and clicks."""
    rng = np.random.default_rng([spec.seed, 16])
    design = config.design()
    n, m = spec.units, spec.searches_per_unit
    names = [c for c, _ in LOCALES]
    locale = rng.choice(names, size=n, p=[p for _, p in LOCALES])
    ids = tuple(f"s{spec.seed}-u{i:07d}" for i in range(n))
    holdout = np.zeros(n, dtype=bool)
    backend = np.empty(n, dtype=object)
    k = np.zeros(n, dtype=np.int64)
    enrol = []
    for i, uid in enumerate(ids):
        a = design.assign(uid, {"locale": str(locale[i])})
        holdout[i] = a.holdout
        backend[i] = a.params["backend"]
        k[i] = int(a.params["k"])
        enrol.append(tuple((e.layer, e.experiment_id, e.arm) for e in a.enrollments))
    q = draw_unit_queries(n, m, lists.pool.weights, spec.repeat_prob, rng)
    probs = click_probabilities(lists, spec)
    p = np.where((backend == "candidate")[:, None, None], probs["candidate"][q], probs["baseline"][q])
    shown = np.arange(DEPTH)[None, None, :] < k[:, None, None]
    clicks = (rng.random(p.shape) < p) & shown
    return Traffic(ids, locale, holdout, tuple(enrol), backend, k, q, clicks)


def _rows(traffic: Traffic, lists: SciFactLists, u: int, j: int, t0: float) -> tuple[list[Event], list[Event]]:
    """The impression and click rows of search j of unit u, in the layered storage convention."""
    uid = traffic.unit_ids[u]
    qi = int(traffic.queries[u, j])
    kk = int(traffic.k[u])
    base = f"{uid}-{j}"
    ts = t0 + u * 0.01 + j * 60.0
    results = tuple(ShownResult(d, r + 1, 1.0 / (r + 1)) for r, d in enumerate(lists.docs[qi][:kk]))
    be = str(traffic.backend[u])
    fps = {be: {"model": f"tfidf-{be}", "index": "scifact-tfidf"}}
    ctx = {"locale": str(traffic.locale[u])}
    rows = [(MAIN_ID, arm, layer) for layer, eid, arm in traffic.enrollments[u] if eid == MAIN_ID]
    rows += [(eid, arm, layer) for layer, eid, arm in traffic.enrollments[u] if eid != MAIN_ID]
    rows.append((HOLDOUT_ID, "holdout" if traffic.holdout[u] else "rest", "holdout"))
    imps: list[Event] = []
    clicks: list[Event] = []
    ranks = np.flatnonzero(traffic.clicks[u, j])
    for eid, arm, layer in rows:
        iid = row_impression_id(base, eid, MAIN_ID)
        c = dict(ctx, impression=base, **({"layer": layer} if layer else {}))
        imps.append(Impression(iid, eid, ts, uid, arm, "ab", lists.pool.texts[qi], kk, results, fps, 20.0,
                               context=c))
        clicks += [Click(iid, eid, uid, arm, ts + 3.0 + r, lists.docs[qi][r], int(r) + 1) for r in ranks]
    return imps, clicks


def write_traffic(traffic: Traffic, lists: SciFactLists, store: Any, *, t0: float = 1_780_000_000.0,
                  batch: int = 5_000, progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Write every search as layered rows into ``store`` (impressions first, then clicks); returns row counts."""
    imps: list[Event] = []
    clicks: list[Event] = []
    n_imp = n_clk = 0
    for u in range(len(traffic.unit_ids)):
        for j in range(traffic.queries.shape[1]):
            a, b = _rows(traffic, lists, u, j, t0)
            imps += a
            clicks += b
        if len(imps) >= batch:
            store.write_batch(imps)
            n_imp += len(imps)
            imps = []
    if imps:
        store.write_batch(imps)
        n_imp += len(imps)
    for i in range(0, len(clicks), batch):
        store.write_batch(clicks[i:i + batch])
    n_clk = len(clicks)
    if progress:
        progress(f"wrote {n_imp} impression rows and {n_clk} click rows")
    return {"impressions": n_imp, "clicks": n_clk}


def unit_sums(traffic: Traffic, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit (clicks, searches) of the units ``rows`` (the in-memory twin of the store's aggregation)."""
    clicks = traffic.clicks[rows].sum(axis=(1, 2)).astype(float)
    return clicks, np.full(rows.size, float(traffic.queries.shape[1]))


def arm_of(traffic: Traffic, experiment_id: str) -> np.ndarray:
    """Each unit's arm in ``experiment_id`` ('' when not enrolled)."""
    return np.array([next((arm for _, e, arm in en if e == experiment_id), "") for en in traffic.enrollments],
                    dtype=object)


def effects_table(planted: Mapping[str, float], recovered: Mapping[str, Sequence[float]]) -> list[str]:
    """Lines of a plain table: effect, planted, recovered, CI, inside."""
    out = [f"{'effect (clicks per query)':<28} {'planted':>9} {'recovered':>10} {'95% CI':>22}  inside"]
    for name, truth in planted.items():
        if name not in recovered:
            continue
        est, lo, hi = recovered[name][:3]
        out.append(f"{name:<28} {truth:>+9.4f} {est:>+10.4f} {f'[{lo:+.4f}, {hi:+.4f}]':>22}  "
                   f"{'yes' if lo <= truth <= hi else 'NO'}")
    return out


@dataclass(frozen=True)
class Recovered:
    """What the analysis read back from the store for one simulated run."""

    effects: Mapping[str, tuple[float, float, float]]  # name -> (estimate, 95% lower, 95% upper)
    srm_p: Mapping[str, float]  # experiment -> SRM p-value
    units: Mapping[str, int]  # experiment -> enrolled units with rows
    interaction_p: float
    interaction_alarm: bool
    bucket_check_p: float  # chi-square of the depth layer's unit counts against its bucket ranges
    reports: Mapping[str, Any]
    memory: Mapping[str, float] = field(default_factory=dict)  # the same effects computed without the store


ANALYSED = ("ranker", "k5", "k8", "k12-de", HOLDOUT_ID)


def analyse_store(store: Any, config: Any, *, de_units: int, metric: str = "clicks_per_query") -> Recovered:
    """Analyse every simulated experiment from ``store`` with the real analysis (fixed-horizon 95 % intervals)."""
    from scipy import stats as sps

    from abharness.analysis import AnalysisOptions, analyze

    opts = AnalysisOptions(primary=metric, basis="fixed", bootstrap_samples=0, cuped=False, timeseries_points=0)
    reports = {eid: analyze(store, eid, config=config, metrics=[metric], options=opts) for eid in ANALYSED}
    effects: dict[str, tuple[float, float, float]] = {}
    for eid, rep in reports.items():
        c = rep.by_treatment[rep.treatments[0]][metric]
        effects[eid] = (c.lift, c.lift_lower, c.lift_upper)
    rows = [r for r in reports["k5"].layered.interactions if r.experiment_a == MAIN_ID]
    check = rows[0].check
    effects["interaction ranker x k5"] = (check.interaction, check.lower, check.upper)
    units = {eid: sum(rep.units.values()) for eid, rep in reports.items()}
    # the depth layer's three experiments own 50 %, 25 % and 20 % (de only) of the units outside the holdout
    n = units[MAIN_ID]
    expected = np.array([0.5 * n, 0.25 * n, 0.2 * de_units])
    observed = np.array([units["k5"], units["k8"], units["k12-de"]], dtype=float)
    free = n - observed.sum()
    chi2 = float((((observed - expected) ** 2) / expected).sum()
                 + (free - (n - expected.sum())) ** 2 / (n - expected.sum()))
    return Recovered(effects, {eid: rep.srm.p_value for eid, rep in reports.items()}, units, check.p_value,
                     check.alarm, float(sps.chi2.sf(chi2, 3)), reports)


def run(lists: SciFactLists, spec: SimSpec, store_url: str, *, progress: Callable[[str], None] | None = None
        ) -> tuple[dict[str, float], Recovered]:
    """Simulate ``spec`` into a new store at ``store_url``, analyse it from the store; (planted, recovered)."""
    from abharness.stores import open_store

    config = sim_config()
    traffic = simulate_traffic(lists, spec, config)
    store = open_store(store_url, migrate=True)
    try:
        write_traffic(traffic, lists, store, progress=progress)
        de_units = int(((traffic.locale == "de") & ~traffic.holdout).sum())
        rec = analyse_store(store, config, de_units=de_units)
        memory = {eid: d for eid, (d, _) in estimates_in_memory(traffic).items()}
        return planted_effects(lists, spec, config), replace(rec, memory=memory)
    finally:
        store.close()


def interaction_in_memory(traffic: Traffic, metric: str = "clicks_per_query") -> Any:
    """The ranker x k5 interaction check on the simulated per-unit sums directly (no store): the same core test
    the analysis runs, cheap enough to repeat over many seeds for its false-alarm rate."""
    from abharness.core.stats.interaction import interaction_check
    from abharness.core.stats.metrics import ONLINE_METRICS
    from abharness.core.stats.moments import Moments

    a, b = arm_of(traffic, MAIN_ID), arm_of(traffic, "k5")
    rows = np.flatnonzero(b != "")
    clicks, searches = unit_sums(traffic, rows)
    x = np.column_stack([clicks, searches])
    cells = {(ai, bi): Moments.from_matrix(("clicks", "impressions"), x[(a[rows] == ai) & (b[rows] == bi)])
             for ai in ("baseline", "candidate") for bi in ("k10", "k5")}
    return interaction_check(cells, ONLINE_METRICS[metric], a_arms=("baseline", "candidate"), b_arms=("k10", "k5"))


def estimates_in_memory(traffic: Traffic) -> dict[str, tuple[float, float]]:
    """Each experiment's (treatment - control) clicks per query and its delta-method SE, on the simulated per-unit
    sums directly (no store): the cheap twin of the stored analysis, for coverage over many seeds."""
    from abharness.core.stats.moments import Moments
    from abharness.core.stats.ratio import ratio_estimate

    rows = np.arange(len(traffic.unit_ids))
    clicks, searches = unit_sums(traffic, rows)
    x = np.column_stack([clicks, searches])
    groups = {eid: (arm_of(traffic, eid), ctl, trt) for eid, ctl, trt in (
        ("ranker", "baseline", "candidate"), ("k5", "k10", "k5"), ("k8", "k10", "k8"), ("k12-de", "k10", "k12"))}
    groups[HOLDOUT_ID] = (np.where(traffic.holdout, "holdout", "rest").astype(object), "holdout", "rest")
    out = {}
    for eid, (arms, ctl, trt) in groups.items():
        est = [tuple(float(np.asarray(v)) for v in ratio_estimate(
            Moments.from_matrix(("clicks", "impressions"), x[arms == a]), "clicks", "impressions")) for a in (ctl, trt)]
        out[eid] = (est[1][0] - est[0][0], float(np.hypot(est[0][1], est[1][1])))
    return out


def coverage_in_memory(traffic: Traffic, planted: Mapping[str, float], alpha: float = 0.05) -> dict[str, bool]:
    """Whether each experiment's (1 - alpha) interval from ``estimates_in_memory`` holds its planted effect."""
    from scipy import stats as sps

    q = float(sps.norm.ppf(1 - alpha / 2))
    return {eid: abs(d - planted[eid]) <= q * se for eid, (d, se) in estimates_in_memory(traffic).items()}
