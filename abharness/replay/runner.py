"""The replay use case: logged queries re-run through both arms, scored offline with the online metric code.

``replay(store, experiment_id, backends, control=..., treatment=...)``:

1. reads the window's impressions (``EventStore.iter_impressions``, optionally a seeded sample);
2. refuses a backend whose model or index fingerprint differs from the one logged for that arm
   (``FingerprintMismatch``) unless ``allow_new_versions``;
3. re-runs every distinct logged query through both arms in batches with ``abharness.backends.retrieval.search``
   (the same ``SearchBackend`` objects the proxy serves with, asked for batches instead of one query per request;
   no timeout or fallback, so a failing backend stops the replay instead of being recorded as a fallback);
4. scores: (a) the online metrics recomputed from the served arm's *replayed* list and the logged clicks
   (``abharness.replay.labels``), per arm, with the analysis' delta-method code: equal to the online analysis
   when the replayed lists are the lists that were shown; (b) the offline delta of those metrics with both arms'
   lists scored on every logged impression (paired, unit-clustered); (c) IR metrics against position-debiased
   click judgments (COEC, ``abharness.replay.logged``) and, when given, qrels; (d) ranking overlap per query;
5. sets the offline deltas beside the online deltas (``abharness.replay.agreement``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import stats as sps

from abharness.backends.base import SearchBackend
from abharness.core import irmetrics
from abharness.core.overlap import jaccard_at_k, rbo_ext
from abharness.core.significance import PairedComparison, compare_paired
from abharness.core.stats.compare import MetricComparison, compare_metric
from abharness.core.stats.metrics import BASE_COLUMNS, ONLINE_METRICS
from abharness.core.stats.moments import Moments
from abharness.core.stats.multiple import holm
from abharness.core.stats.ratio import ratio_estimate
from abharness.errors import ConfigError, FingerprintMismatch
from abharness.replay.agreement import Agreement, agreement_rows
from abharness.replay.labels import REPLAYABLE_METRICS, impression_row, unit_moments
from abharness.replay.logged import LoggedImpression, coec_judgments, read_logged
from abharness.stores.base import EventStore

__all__ = ["replay", "ReplayReport", "OfflineDelta", "QueryOverlap", "check_fingerprints", "DEFAULT_IR_METRICS"]

DEFAULT_IR_METRICS: tuple[str, ...] = ("ndcg@10", "mrr@10", "recall@10")


@dataclass(frozen=True, slots=True)
class OfflineDelta:
    """Treatment - control of one click-label metric, both arms' replayed lists on the same logged impressions.

    Paired per impression, aggregated per unit; ``se`` is the delta-method standard error of the ratio
    sum_units(sum of differences) / sum_units(impressions), clustered by unit (Deng, Knoblich & Lu 2018)."""

    metric: str
    control: float
    treatment: float
    delta: float
    se: float
    lower: float
    upper: float
    p_value: float
    impressions: int
    units: int


@dataclass(frozen=True, slots=True)
class QueryOverlap:
    query: str
    impressions: int
    jaccard: float
    rbo: float
    control_top: tuple[str, ...]
    treatment_top: tuple[str, ...]


@dataclass(frozen=True)
class ReplayReport:
    """Everything replay found. ``to_dict()`` gives JSON."""

    experiment_id: str
    control: str
    treatment: str
    k: int
    impressions: int
    units: int
    distinct_queries: int
    modes: Mapping[str, int]
    new_versions: tuple[str, ...]
    identical_lists: Mapping[str, float]
    replayed_online: Mapping[str, MetricComparison]
    offline_click: Mapping[str, OfflineDelta]
    coec: Mapping[str, PairedComparison]
    qrels: Mapping[str, PairedComparison]
    qrels_queries: int
    overlap_mean_jaccard: float
    overlap_mean_rbo: float
    most_different: tuple[QueryOverlap, ...]
    agreement: tuple[Agreement, ...]
    online: Mapping[str, MetricComparison] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        def conv(v: Any) -> Any:
            if hasattr(v, "__dataclass_fields__"):
                return {k: conv(x) for k, x in asdict(v).items()}
            if isinstance(v, Mapping):
                return {str(k): conv(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [conv(x) for x in v]
            if isinstance(v, float) and not np.isfinite(v):
                return None
            if isinstance(v, np.generic):
                return v.item()
            return v

        out = {f: conv(getattr(self, f)) for f in self.__dataclass_fields__}
        return out

    def to_frame(self) -> Any:
        """A pandas DataFrame of the offline-vs-online agreement: one row per (offline source, metric) with the
        offline delta and interval beside the online one and whether their signs agree."""
        from dataclasses import asdict

        import pandas as pd

        return pd.DataFrame([asdict(a) for a in self.agreement])


def check_fingerprints(
    logged: list[LoggedImpression], backends: Mapping[str, SearchBackend], *, allow_new_versions: bool
) -> tuple[str, ...]:
    """Compare each backend with the fingerprints logged for its arm; raise unless ``allow_new_versions``.

    Returns the arms replayed against versions other than the logged ones (empty when all match)."""
    logged_fp: dict[str, set[tuple[str, str]]] = {}
    for imp in logged:
        for arm, fp in imp.fingerprints.items():
            logged_fp.setdefault(arm, set()).add((str(fp.get("model", "")), str(fp.get("index", ""))))
    changed = []
    for arm, backend in backends.items():
        seen = logged_fp.get(arm)
        if not seen:
            continue
        have = (backend.info.model_fingerprint, backend.info.index_fingerprint)
        if have not in seen:
            changed.append(arm)
            if not allow_new_versions:
                logged_desc = ", ".join(f"model {m} / index {i}" for m, i in sorted(seen))
                raise FingerprintMismatch(
                    f"arm {arm!r} was logged with {logged_desc} but the backend given now serves model {have[0]} / "
                    f"index {have[1]}; pass the logged model and index, or --allow-new-versions to replay the "
                    "logged queries against the new versions on purpose"
                )
    return tuple(changed)


def _offline_delta(metric: str, units: list[str], rows_c: np.ndarray, rows_t: np.ndarray, alpha: float) -> OfflineDelta:
    spec = ONLINE_METRICS[metric]
    i_num, i_den = BASE_COLUMNS.index(spec.numerator), BASE_COLUMNS.index(spec.denominator)
    cols = ("diff", "den", "control", "treatment")
    m = unit_moments(units, np.column_stack([rows_t[:, i_num] - rows_c[:, i_num], rows_c[:, i_den],
                                             rows_c[:, i_num], rows_t[:, i_num]]), cols)
    delta, se = (float(np.asarray(v)) for v in ratio_estimate(m, "diff", "den"))
    den = float(m.sums[1])
    c_val = float(m.sums[2]) / den if den else float("nan")
    t_val = float(m.sums[3]) / den if den else float("nan")
    q = float(sps.norm.ppf(1 - alpha / 2))
    if se > 0:
        p = float(2 * sps.norm.sf(abs(delta) / se))
    else:
        p = 1.0 if delta == 0 else 0.0
    return OfflineDelta(metric, c_val, t_val, delta, se, delta - q * se, delta + q * se, p, len(units),
                        int(np.asarray(m.n)))


def _ir_compare(run_c: dict, run_t: dict, qrels: Mapping[str, Mapping[str, int]], metrics: tuple[str, ...],
                seed: int) -> dict[str, PairedComparison]:
    """Paired per-query comparison of both arms' replayed runs (bootstrap CI, randomization p, Holm)."""
    if not irmetrics.evaluated_query_ids(qrels):
        return {}
    tc = irmetrics.compute_table(run_c, qrels, metrics)
    tt = irmetrics.compute_table(run_t, qrels, metrics)
    out = {m: compare_paired(m, tc.scores[m], tt.scores[m], n_resamples=2000, seed=seed) for m in tc.scores}
    adjusted = holm([c.p_value for c in out.values()])
    return {m: replace(c, p_holm=p) for (m, c), p in zip(out.items(), adjusted)}


def replay(
    store: EventStore,
    experiment_id: str,
    backends: Mapping[str, SearchBackend],
    *,
    control: str,
    treatment: str,
    since: float | None = None,
    until: float | None = None,
    sample: int | None = None,
    qrels: Mapping[str, Mapping[str, int]] | None = None,
    query_ids: Mapping[str, str] | None = None,
    ir_metrics: tuple[str, ...] = DEFAULT_IR_METRICS,
    allow_new_versions: bool = False,
    batch_size: int = 64,
    alpha: float = 0.05,
    top_different: int = 10,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    search_progress: bool = False,
) -> ReplayReport:
    """Replay an experiment's logged queries through ``backends[control]`` and ``backends[treatment]``.

    ``qrels`` (query id -> doc -> grade) needs ``query_ids`` (query text -> query id) to match logged texts.
    """
    from abharness.backends.retrieval import search

    say = progress or (lambda s: None)
    for name in (control, treatment):
        if name not in backends:
            raise ConfigError(f"no backend for arm {name!r}; backends given: {sorted(backends)}")
    if control == treatment:
        raise ConfigError(f"control and treatment are both {control!r}; replay compares two different arms")
    irmetrics.parse_ir_metrics(ir_metrics)
    say("reading logged impressions")
    logged = read_logged(store, experiment_id, since=since, until=until, sample=sample, seed=seed)
    new_versions = check_fingerprints(logged, {control: backends[control], treatment: backends[treatment]},
                                      allow_new_versions=allow_new_versions)
    k = max(r.k for r in logged)
    queries = sorted({r.query for r in logged})
    say(f"re-running {len(queries)} distinct queries through both arms")
    lists: dict[str, dict[str, list[str]]] = {}
    for arm in (control, treatment):
        hits = search(backends[arm], queries, k, batch_size=batch_size, progress=search_progress)
        lists[arm] = {q: [h.doc_id for h in hs] for q, hs in zip(queries, hits)}

    say("scoring logged clicks on the replayed lists")
    rows = {arm: np.stack([impression_row(r, lists[arm][r.query]) for r in logged]) for arm in (control, treatment)}
    units = [r.unit_id for r in logged]
    # (a) the online metrics from the serving arm's replayed list, per arm (A/B impressions only)
    ab = [i for i, r in enumerate(logged) if r.mode == "ab" and r.arm in (control, treatment)]
    identical: dict[str, float] = {}
    replayed_online: dict[str, MetricComparison] = {}
    by_arm = {arm: [i for i in ab if logged[i].arm == arm] for arm in (control, treatment)}
    for arm, idx in by_arm.items():
        same = [lists[arm][logged[i].query][: logged[i].k] == list(logged[i].shown) for i in idx]
        identical[arm] = float(np.mean(same)) if same else float("nan")
    if all(by_arm.values()):
        mc = unit_moments([units[i] for i in by_arm[control]], rows[control][by_arm[control]])
        mt = unit_moments([units[i] for i in by_arm[treatment]], rows[treatment][by_arm[treatment]])
        for metric in REPLAYABLE_METRICS:
            replayed_online[metric] = compare_metric(mc, mt, ONLINE_METRICS[metric], control_name=control,
                                                     treatment_name=treatment, alpha=alpha)
    # (b) offline delta: both arms' lists on every logged impression, paired
    offline_click = {m: _offline_delta(m, units, rows[control], rows[treatment], alpha) for m in REPLAYABLE_METRICS}
    # (c) IR metrics against click judgments and qrels, per distinct query
    run_c = {q: lists[control][q] for q in queries}
    run_t = {q: lists[treatment][q] for q in queries}
    say("judging documents by clicks over expected clicks")
    coec_qrels, _ = coec_judgments(logged)
    coec = _ir_compare(run_c, run_t, coec_qrels, ir_metrics, seed)
    qrels_cmp: dict[str, PairedComparison] = {}
    qrels_queries = 0
    if qrels is not None:
        ids = query_ids or {}
        by_text = {q: qrels[ids[q]] for q in queries if q in ids and ids[q] in qrels}
        qrels_queries = len(by_text)
        if not by_text:
            raise ConfigError(
                "none of the logged queries matches a query of the qrels; pass the queries file of the same "
                "collection (its texts must equal the logged query texts)"
            )
        qrels_cmp = _ir_compare(run_c, run_t, by_text, ir_metrics, seed)
    # (d) overlap
    counts = Counter(r.query for r in logged)
    overlaps = [
        QueryOverlap(q, counts[q], jaccard_at_k(run_c[q], run_t[q], k), rbo_ext(run_c[q][:k], run_t[q][:k]),
                     tuple(run_c[q][:5]), tuple(run_t[q][:5]))
        for q in queries
    ]
    most_different = tuple(sorted(overlaps, key=lambda o: (o.rbo, -o.impressions, o.query))[:top_different])
    # online deltas of the same experiment and window, from the store's SQL aggregates (the analysis' input)
    say("computing the online deltas of the same window")
    online = online_comparisons(store, experiment_id, control, treatment, since=since, until=until, alpha=alpha)
    agreement = agreement_rows(online, offline_click, coec, qrels_cmp)
    modes = Counter(r.mode for r in logged)
    return ReplayReport(
        experiment_id=experiment_id, control=control, treatment=treatment, k=k, impressions=len(logged),
        units=len(set(units)), distinct_queries=len(queries), modes=dict(modes), new_versions=new_versions,
        identical_lists=identical, replayed_online=replayed_online, offline_click=offline_click, coec=coec,
        qrels=qrels_cmp, qrels_queries=qrels_queries,
        overlap_mean_jaccard=float(np.mean([o.jaccard for o in overlaps])),
        overlap_mean_rbo=float(np.mean([o.rbo for o in overlaps])), most_different=most_different,
        agreement=agreement, online=online,
    )


def online_comparisons(
    store: EventStore, experiment_id: str, control: str, treatment: str, *, since: float | None,
    until: float | None, alpha: float = 0.05,
) -> dict[str, MetricComparison]:
    """Online treatment-vs-control comparisons of the replayable metrics: the analysis' own loader
    (``store.unit_aggregates``, A/B impressions) and delta-method code, without CUPED (so replay compares like
    with like)."""
    from abharness.analysis.loading import load_units

    table = load_units(store, experiment_id, since=since, until=until)
    if not table.mask(control).any() or not table.mask(treatment).any():
        return {}
    mc = Moments.from_matrix(BASE_COLUMNS, table.values[table.mask(control)])
    mt = Moments.from_matrix(BASE_COLUMNS, table.values[table.mask(treatment)])
    return {m: compare_metric(mc, mt, ONLINE_METRICS[m], control_name=control, treatment_name=treatment, alpha=alpha)
            for m in REPLAYABLE_METRICS}
