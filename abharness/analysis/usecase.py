"""The analyze use case: per-unit aggregates from an ``EventStore`` (computed in SQL) in, an ``AnalysisReport`` out.

Order matters and is fixed: the sample-ratio check is computed first, then metrics, then the decision (which an
SRM alarm blocks from being "ship").
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

import numpy as np

from abharness.analysis.daily import PrefetchedPartials, prefetch_partials, row_fields_for
from abharness.analysis.deployments import deployment_changes, describe_changes
from abharness.analysis.exclusions import apply_exclusions, exclude_interleaving, excluded_units
from abharness.analysis.loading import (
    ALL_COLUMNS,
    has_impressions,
    load_interleave,
    load_pre_period,
    load_units,
    moments_for,
    with_covariates,
)
from abharness.analysis.layered import arms_view
from abharness.analysis.options import AnalysisOptions
from abharness.analysis.report import AnalysisReport, CupedSummary, PowerSummary
from abharness.analysis.resample import cluster_bootstrap_blas
from abharness.analysis.sections import cumulative_timeseries, look_cutoffs, segment_breakdown, traffic_buckets
from abharness.core.interleaving import InterleavingResult, decide_interleaving, interleaving_test
from abharness.core.stats.compare import MetricComparison, compare_metric
from abharness.core.stats.decision import Decision, decide
from abharness.core.stats.metrics import BASE_COLUMNS, ONLINE_METRICS, parse_online_metrics
from abharness.core.stats.moments import Moments
from abharness.core.stats.multiple import benjamini_hochberg, holm
from abharness.core.stats.power import (
    days_still_needed,
    mde,
    one_sample_mde,
    one_sample_required_units,
    power_at,
    required_units,
)
from abharness.core.stats.ratio import ratio_diff
from abharness.core.stats.srm import srm_test
from abharness.errors import AnalysisError, ConfigError
from abharness.stores.base import EventStore

__all__ = ["analyze", "CONTROL_NAMES"]

#: arm names taken as control when neither the options nor the experiment config say which arm is control.
CONTROL_NAMES = ("control", "baseline", "production")
_BOOTSTRAP_MISMATCH = 0.25


def iso_time(ts: float | None) -> str:
    """A unix time as ISO 8601 UTC to the second (what --since/--until accept back), '-' for None."""
    if ts is None or not math.isfinite(ts):
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _window_text(since: float | None, until: float | None) -> str:
    return f"[{iso_time(since) if since is not None else 'start'}, {iso_time(until) if until is not None else 'now'})"


def _resolve_control(control: str | None, arms: list[str]) -> str:
    if control is not None:
        if control not in arms:
            raise AnalysisError(f"control arm {control!r} has no units in the window; arms with data: {arms}. "
                                "Check --control or the experiment config, or widen the window")
        return control
    named = [a for a in arms if a in CONTROL_NAMES]
    if len(named) == 1:
        return named[0]
    raise AnalysisError(f"cannot tell which of the arms {arms} is control: pass --control NAME "
                        "(or --config with the experiment file)")


def analyze(
    store: EventStore,
    experiment_id: str,
    *,
    config: Any = None,
    since: float | None = None,
    until: float | None = None,
    metrics: Iterable[str] | None = None,
    segment: str | None = None,
    options: AnalysisOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> AnalysisReport:
    """Analyse an experiment in ``store`` over the window since <= ts < until.

    Raises ``AnalysisError`` when no answer is possible (unknown experiment, empty window, a single arm) and
    ``ConfigError`` for bad options; data conditions (zero variance, no pre-period, SRM) come back as
    diagnostics on the report. ``config`` may be an ``ExperimentConfig`` (control arm and weights are read
    from it). ``progress`` receives short stage descriptions.
    """
    say = progress or (lambda _msg: None)
    audit = (lambda: store.audit_log(config.experiment_id)) if config is not None else None
    view = arms_view(config, experiment_id, audit)  # an experiment of a layered file: its own arms and weights
    opts = (options or AnalysisOptions()).with_config(view if view is not None else config).validated()
    names = parse_online_metrics(metrics)
    if opts.primary not in names:
        names = (opts.primary, *names)
    if since is not None and until is not None and since >= until:
        raise ConfigError(f"window since={since} >= until={until}: --since must be before --until")
    known = store.experiments()
    if experiment_id not in known:
        raise AnalysisError(f"experiment {experiment_id!r} not found in {store.url}: experiments with impressions "
                            f"there: {known or 'none'}. Check --experiment")
    say("aggregating per unit in the store")
    table = load_units(store, experiment_id, since=since, until=until, aggregation=opts.aggregation,
                       row_fields=row_fields_for(opts.primary))
    prefetched = None
    if opts.aggregation == "rollup" and table.days is not None and not opts.exclusions.active() \
            and opts.timeseries_points > 0 and table.first_ts.size:
        # the time series' cut-through unit-days, read in the background while the rest is computed
        prefetched = prefetch_partials(store, experiment_id, since=since, until=until, days=table.days,
                                       cuts=look_cutoffs(table.first_ts, opts.timeseries_points, until),
                                       metric=opts.primary)
    try:
        return _analyze_table(store, experiment_id, since, until, opts, names, table, prefetched, view, config,
                              audit, segment, say)
    finally:
        if prefetched is not None:
            prefetched.discard()


def _analyze_table(store: EventStore, experiment_id: str, since: float | None, until: float | None,
                   opts: AnalysisOptions, names: tuple[str, ...], table: Any, prefetched: PrefetchedPartials | None,
                   view: Any, config: Any, audit: Any, segment: str | None,
                   say: Callable[[str], None]) -> AnalysisReport:
    """``analyze`` once the per-unit table is read."""
    inter = load_interleave(store, experiment_id, since=since, until=until, aggregation=opts.aggregation)
    if table.rows == 0 and inter.impressions.size == 0:
        raise AnalysisError(f"experiment {experiment_id!r} has no A/B or interleaved impressions in the window "
                            f"{_window_text(since, until)}: widen --since/--until")
    diagnostics: list[str] = []
    exclusion = None
    logged = table  # traffic per day is what the proxy logged, before any exclusion rule
    if opts.exclusions.active() and inter.impressions.size:  # bots out of the interleaving test too (rules 1-3)
        bots = excluded_units(store, experiment_id, opts.exclusions, since=since, until=until, modes=("interleave",))
        inter, inter_effect = exclude_interleaving(inter, bots)
        if inter_effect is not None:
            diagnostics.append(f"interleaving: the bot rules removed {inter_effect.units['interleaved']} units "
                               f"({inter_effect.impressions['interleaved']:.0f} impressions)")
    if opts.exclusions.active() and table.rows:
        say("applying the bot and outlier rules")
        table, exclusion = apply_exclusions(store, experiment_id, table, opts.exclusions, since=since, until=until)
        if table.rows == 0:
            raise AnalysisError(f"the exclusion rules removed every unit of {experiment_id!r} "
                                f"({[e.rule for e in exclusion.effects]}): loosen them")
        diagnostics.append("bot/outlier rules applied to the A/B comparison, SRM, CUPED, power and (rules 1-3) the "
                           "interleaving test and the looks of the time series; the segment breakdown reads all units")
    if table.rows == 0:
        return _interleaving_only(store, experiment_id, since, until, opts, inter, diagnostics)

    arms = table.arms()
    control = _resolve_control(opts.control, arms)
    treatments = tuple(a for a in arms if a != control)
    if not treatments:
        raise AnalysisError(f"experiment {experiment_id!r} has only one arm ({control!r}) with units in the window "
                            f"{_window_text(since, until)}: nothing to compare; check the allocation or the window")
    units = table.units_per_arm()
    impressions = {a: int(table.values[table.mask(a), 0].sum()) for a in arms}
    n_unique = len(set(table.unit_ids.tolist()))
    if n_unique < table.rows:
        diagnostics.append(f"{table.rows - n_unique} units appear in more than one arm (re-assignment, e.g. a ramp): "
                           "they are counted in each arm, which breaks independence slightly")

    # 1. sample-ratio mismatch, before anything else
    weights = opts.weights
    start = since if since is not None else (float(np.min(table.first_ts)) if table.first_ts.size else None)
    recorded = _recorded_allocation(store, experiment_id, start, until, set(arms), diagnostics)
    if recorded is not None and not _same_allocation(recorded, weights):
        if weights is not None:
            diagnostics.append(f"SRM uses the allocation the proxy recorded in the audit log for this window "
                               f"({recorded}), not the configured {dict(weights)} (an admin ramp changed it)")
        weights = recorded
    if weights is None:
        weights = {a: 1.0 for a in arms}
        diagnostics.append("allocation weights not given (--weights or --config): SRM assumes an equal split")
    try:
        srm = srm_test(units, weights)
        if exclusion is not None:  # SRM on all units too: a rule that hits one arm harder shows up here
            exclusion = dataclasses.replace(exclusion, srm_before=srm_test(
                {a: n for a, n in exclusion.units_before.items() if a in weights}, weights))
    except ValueError as exc:
        raise ConfigError(f"SRM check: {exc}; pass --weights for every arm with data") from None

    # 2. CUPED covariates from the pre-period
    say("reading the pre-period for CUPED")
    pre, cuped = _pre_period(store, experiment_id, since, table, opts)
    if cuped.applied:
        matrix = with_covariates(table, pre)
        moments = {a: moments_for(matrix, table.mask(a), ALL_COLUMNS) for a in arms}
        del matrix
    else:  # no covariate is read without CUPED: the base columns only (the pre-period ones would all be 0)
        moments = {a: moments_for(table.values, table.mask(a), BASE_COLUMNS) for a in arms}

    # 3. comparisons
    say("comparing arms")
    by_treatment: dict[str, dict[str, MetricComparison]] = {}
    guardrails: dict[str, dict[str, MetricComparison]] = {}
    for t in treatments:
        comps = {}
        for name in names:
            spec = ONLINE_METRICS[name]
            covs = (f"pre_{spec.numerator}", f"pre_{spec.denominator}", "has_history") if cuped.applied else ()
            comps[name] = compare_metric(moments[control], moments[t], spec, control_name=control, treatment_name=t,
                                         covariates=covs, alpha=opts.alpha, test=opts.test,
                                         tuning_units=opts.tuning_units)
        by_treatment[t] = _adjust_multiple(comps)
        guardrails[t] = {
            g.name: compare_metric(moments[control], moments[t], g, control_name=control, treatment_name=t,
                                   alpha=opts.alpha, test=opts.test, tuning_units=opts.tuning_units)
            for g in opts.guardrail_specs()
        }
    first = treatments[0]
    if opts.bootstrap_samples:
        say(f"cluster bootstrap ({opts.bootstrap_samples} resamples)")
        by_treatment[first] = _bootstrap(table, control, first, by_treatment[first], opts, diagnostics,
                                         moments if not cuped.applied else None)

    # 4. power, segments, time series
    power_metrics = [m for m in dict.fromkeys((opts.primary, "ctr", "mrr")) if m in names]
    power = tuple(_power(table, control, t, by_treatment[t][m], opts, weights) for t in treatments
                  for m in power_metrics)
    segments = ()
    if segment is not None:
        say(f"breakdown by segment {segment!r}")
        segments = segment_breakdown(store, experiment_id, since=since, until=until, key=segment, control=control,
                                     treatments=treatments, metrics=names, alpha=opts.alpha, test=opts.test,
                                     tuning_units=opts.tuning_units, diagnostics=diagnostics)
    timeseries = cumulative_timeseries(
        store, experiment_id, since=since, until=until, first_ts=table.first_ts, control=control, treatment=first,
        metric=opts.primary, points=opts.timeseries_points, alpha=opts.alpha, test=opts.test,
        tuning_units=opts.tuning_units, progress=say, keep_units=table.unit_ids if exclusion is not None else None,
        table=logged, aggregation=opts.aggregation, prefetched=prefetched,
    )
    interleaving = _interleaving(inter, control, opts, diagnostics) if inter.impressions.size else None
    say("counting traffic per arm over time")
    traffic, bucket_s = traffic_buckets(store, experiment_id, since=since, until=until, first_ts=logged.first_ts,
                                        arm=logged.arm, days=logged.days)

    layered = None
    if view is not None:  # layered file: the experiment's place in it and the interaction diagnostic
        from abharness.analysis.interaction import layered_summary

        layered = layered_summary(store, config, view, table, metric=opts.primary, since=since, until=until,
                                  aggregation=opts.aggregation, alpha=opts.alpha, progress=say, audit=audit)

    # 5. one decision (none across a redeploy of an arm inside the window)
    decision = decide(srm_alarm=srm.alarm, srm_message=srm.message,
                      primary=[by_treatment[t][opts.primary] for t in treatments],
                      guardrails=[g for t in treatments for g in guardrails[t].values()], basis=opts.basis)
    decision = _no_verdict_across_redeploys(store, experiment_id, since, until, decision, diagnostics)
    for t in treatments:
        for c in (*by_treatment[t].values(), *guardrails[t].values()):
            diagnostics.extend(f"{t}/{c.metric}: {d}" for d in c.diagnostics)
    return AnalysisReport(
        experiment_id=experiment_id, since=since, until=until, control=control, treatments=treatments,
        units=units, impressions=impressions, srm=srm, metrics=by_treatment[first], guardrails=guardrails[first],
        by_treatment=by_treatment, primary=opts.primary, power=power, cuped=cuped, interleaving=interleaving,
        segments=segments, timeseries=timeseries, decision=decision.decision, reasons=decision.reasons,
        basis=opts.basis, alpha=opts.alpha, diagnostics=tuple(dict.fromkeys(diagnostics)), traffic=traffic,
        traffic_bucket_s=bucket_s, exclusions=exclusion, layered=layered,
    )


def _pre_period(
    store: EventStore, experiment_id: str, since: float | None, table: Any, opts: AnalysisOptions
) -> tuple[dict[str, np.ndarray], CupedSummary]:
    pp = opts.pre_period
    pre_exp = pp.experiment_id or experiment_id
    pre_until = pp.until if pp.until is not None else (since if since is not None else float(table.first_ts.min()))
    if not opts.cuped:
        return {}, CupedSummary(False, pre_exp, pp.since, pre_until, pp.modes, 0, table.rows, "CUPED switched off")
    # A one-row probe first: an empty pre-period is the common case, and the scan aggregate reads every click of
    # the experiment (its click side is not windowed), about 17 s on 10 M impressions.
    any_before = has_impressions(store, pre_exp, since=pp.since, until=pre_until, modes=pp.modes)
    pre = (load_pre_period(store, pre_exp, since=pp.since, until=pre_until, modes=pp.modes,
                           aggregation=opts.aggregation) if any_before else {})
    with_history = sum(1 for u in table.unit_ids.tolist() if u in pre) if pre else 0
    if with_history == 0:
        note = (f"no unit has pre-period data in {pre_exp!r} modes {list(pp.modes)} before {iso_time(pre_until)}: CUPED not "
                "applied (give --pre-experiment/--pre-since/--pre-until/--pre-modes to point at one)")
        return {}, CupedSummary(False, pre_exp, pp.since, pre_until, pp.modes, 0, table.rows, note)
    note = (f"{with_history} of {table.rows} units have pre-period history; units without history are adjusted "
            "through a has-history indicator covariate (their pre-period sums are 0)")
    return pre, CupedSummary(True, pre_exp, pp.since, pre_until, pp.modes, with_history,
                             table.rows - with_history, note)


def _adjust_multiple(comps: dict[str, MetricComparison]) -> dict[str, MetricComparison]:
    names = list(comps)
    p = [comps[n].p_value for n in names]
    h, b = holm(p), benjamini_hochberg(p)
    return {n: dataclasses.replace(comps[n], p_holm=h[i], p_bh=b[i]) for i, n in enumerate(names)}


def _bootstrap(table: Any, control: str, treatment: str, comps: dict[str, MetricComparison],
               opts: AnalysisOptions, diagnostics: list[str],
               moments: dict[str, Moments] | None = None) -> dict[str, MetricComparison]:
    """``moments``: the arms' moments over BASE_COLUMNS when already computed (the same sums: not again)."""
    names = list(comps)
    pairs = [(BASE_COLUMNS.index(ONLINE_METRICS[n].numerator), BASE_COLUMNS.index(ONLINE_METRICS[n].denominator)) for n in names]
    xc, xt = table.values[table.mask(control)], table.values[table.mask(treatment)]
    res = cluster_bootstrap_blas(xc, xt, pairs, samples=opts.bootstrap_samples, alpha=opts.alpha,
                                 rng=np.random.default_rng(opts.seed))
    if moments is not None and moments[control].columns == BASE_COLUMNS:
        mc, mt = moments[control], moments[treatment]
    else:
        mc, mt = Moments.from_matrix(BASE_COLUMNS, xc), Moments.from_matrix(BASE_COLUMNS, xt)
    out = {}
    for n, r in zip(names, res):
        spec = ONLINE_METRICS[n]
        delta_se = float(ratio_diff(mc, mt, spec.numerator, spec.denominator).se)
        if np.isfinite(r.se) and delta_se > 0 and abs(r.se / delta_se - 1) > _BOOTSTRAP_MISMATCH:
            diagnostics.append(f"{treatment}/{n}: cluster-bootstrap SE {r.se:.3g} differs from the (unadjusted) "
                               f"delta-method SE {delta_se:.3g} by more than {_BOOTSTRAP_MISMATCH:.0%}: few units or "
                               "heavy tails; trust intervals less")
        out[n] = dataclasses.replace(comps[n], bootstrap_se=r.se, bootstrap_lower=r.lower, bootstrap_upper=r.upper)
    return out


def _power(table: Any, control: str, treatment: str, comp: MetricComparison, opts: AnalysisOptions,
           weights: dict[str, float] | Any) -> PowerSummary:
    nc, nt = comp.control.units, comp.treatment.units
    wc, wt = float(weights.get(control, 0)), float(weights.get(treatment, 0))
    share = wt / (wc + wt) if wc > 0 and wt > 0 else nt / max(nc + nt, 1)
    target = abs(comp.control.value) * opts.target_relative_mde
    need = required_units(comp.sigma2_unit, target, alpha=opts.alpha, power=opts.power, treatment_share=share)
    pair = table.mask(control) | table.mask(treatment)
    ts = table.first_ts[pair]
    span_days = (float(ts.max()) - float(ts.min())) / 86_400.0 if ts.size else 0.0
    # A rate of new units per day needs at least a day of data: a 10-second test extrapolated to a day says
    # nothing about traffic (nor about daily and weekly cycles). Below a day, the rate and the days are unknown.
    rate = (nc + nt) / span_days if span_days >= 1.0 else float("nan")
    m = mde(comp.sigma2_unit, nc, nt, alpha=opts.alpha, power=opts.power)
    deff = None
    if comp.metric == "ctr":
        p, n_imp = comp.control.value, comp.control.denominator
        naive = p * (1 - p) / n_imp if n_imp > 0 else float("nan")
        deff = comp.control.se**2 / naive if naive > 0 else float("nan")
    return PowerSummary(
        metric=comp.metric, treatment=treatment, sigma2_unit=comp.sigma2_unit,
        target_relative_mde=opts.target_relative_mde, target_absolute_mde=target, power=opts.power,
        current_units=nc + nt, required_units=need, power_now=power_at(comp.sigma2_unit, target, nc, nt, opts.alpha),
        mde_absolute=m, mde_relative=m / abs(comp.control.value) if comp.control.value else float("nan"),
        units_per_day=rate, days_still_needed=_days_needed(need, nc + nt, rate, span_days), design_effect=deff,
        observed_days=span_days,
    )


def _days_needed(need: float, units: int, rate: float, span_days: float) -> float:
    """``days_still_needed``, except unknown (nan) while there is less than a day of data and units are missing."""
    if span_days < 1.0 and math.isfinite(need) and need > units:
        return float("nan")
    return days_still_needed(need, units, rate)


def _interleaving(inter: Any, control: str | None, opts: AnalysisOptions,
                  diagnostics: list[str]) -> InterleavingResult | None:
    teams = list(inter.teams)
    if len(teams) != 2:
        diagnostics.append(f"interleaving: need clicks credited to exactly two teams, found {teams or 'none'}")
        return None
    ctrl = control if control in teams else next((t for t in teams if t in CONTROL_NAMES), None)
    if ctrl is None:
        raise AnalysisError(f"cannot tell which interleaving team of {teams} is control: pass --control NAME")
    treat = teams[1 - teams.index(ctrl)]
    res = interleaving_test(inter.wins[:, teams.index(treat)], inter.wins[:, teams.index(ctrl)], inter.ties,
                            inter.impressions, control=ctrl, treatment=treat, alpha=opts.alpha,
                            tuning_units=opts.tuning_units)
    diagnostics.extend(f"interleaving: {d}" for d in res.diagnostics)
    return res


def _interleaving_only(store: EventStore, experiment_id: str, since: float | None, until: float | None,
                       opts: AnalysisOptions, inter: Any, diagnostics: list[str]) -> AnalysisReport:
    res = _interleaving(inter, opts.control, opts, diagnostics)
    if res is None:
        raise AnalysisError(f"experiment {experiment_id!r} has interleaved impressions in the window but no clicks "
                            "credited to two teams yet: keep collecting, or check the click logging")
    decision = decide_interleaving(res, opts.basis)
    decision = _no_verdict_across_redeploys(store, experiment_id, since, until, decision, diagnostics)
    need = one_sample_required_units(res.sigma2_unit, res.preference or float("nan"), alpha=opts.alpha,
                                     power=opts.power)
    m = one_sample_mde(res.sigma2_unit, res.units, alpha=opts.alpha, power=opts.power)
    power = PowerSummary(
        metric="interleaving_preference", treatment=res.treatment, sigma2_unit=res.sigma2_unit,
        target_relative_mde=float("nan"), target_absolute_mde=abs(res.preference), power=opts.power,
        current_units=res.units, required_units=need, power_now=float("nan"), mde_absolute=m,
        mde_relative=float("nan"), units_per_day=float("nan"), days_still_needed=float("nan"),
    )
    return AnalysisReport(
        experiment_id=experiment_id, since=since, until=until, control=res.control, treatments=(res.treatment,),
        units={"interleaved": res.units}, impressions={"interleaved": res.impressions}, srm=None, metrics={},
        guardrails={}, by_treatment={}, primary="interleaving_preference", power=(power,), cuped=None,
        interleaving=res, segments=(), timeseries=(), decision=decision.decision, reasons=decision.reasons,
        basis=opts.basis, alpha=opts.alpha, diagnostics=tuple(dict.fromkeys(diagnostics)),
    )


def _no_verdict_across_redeploys(store: EventStore, experiment_id: str, since: float | None, until: float | None,
                                 decision: Decision, diagnostics: list[str]) -> Decision:
    """``keep-running`` naming the change when an arm's model or index changed inside the window."""
    changes = deployment_changes(store, experiment_id, since=since, until=until)
    if not changes:
        return decision
    message = describe_changes(changes)
    diagnostics.append(message)
    return Decision("keep-running", (message, f"(without the change the decision would be {decision.decision})"))


def _same_allocation(a: dict[str, float], b: Any) -> bool:
    """Equal as shares (weights 1:1 and 0.5:0.5 are the same allocation)."""
    if b is None or set(a) != set(b):
        return False
    ta, tb = sum(a.values()), sum(float(v) for v in b.values())
    return all(abs(a[k] / ta - float(b[k]) / tb) < 1e-9 for k in a)


def _recorded_allocation(store: EventStore, experiment_id: str, since: float | None, until: float | None,
                         arms: set[str], diagnostics: list[str]) -> dict[str, float] | None:
    """The allocation the proxy applied during the window, from the audit log, when it was constant.

    The proxy records its effective weights at every start (``serve_start``) and every admin ramp
    (``allocation``). An SRM test against one allocation is only valid for a window in which the allocation did
    not change: when it changed inside the window, a diagnostic names the change times and the fix (analyse one
    allocation period with --since), and None is returned (the configured weights are used). Stores without an
    audit log, or logs that do not name exactly the arms with data, give None.
    """
    try:
        entries = store.audit_log(experiment_id)
    except Exception:  # noqa: BLE001 - the audit log is optional evidence; the SRM check still runs without it
        return None
    history: list[tuple[float, dict[str, float]]] = []
    for e in entries:
        raw = e.payload.get("weights") if e.action == "allocation" else (
            e.payload.get("effective_weights") if e.action == "serve_start" else None)
        if isinstance(raw, dict) and raw:
            w = {str(k): float(v) for k, v in raw.items()}
            total = sum(w.values())
            if total > 0:
                history.append((e.ts, {k: v / total for k, v in w.items()}))
    if not history:
        return None
    lo = -math.inf if since is None else since
    hi = math.inf if until is None else until
    in_force = [w for ts, w in history if ts <= lo]
    current = in_force[-1] if in_force else history[0][1]
    changes = []
    for ts, w in history:
        if lo < ts < hi and w != current:
            changes.append((ts, w))
            current = w
    if changes:
        when = ", ".join(f"{iso_time(ts)} -> {w}"
                         for ts, w in changes[:5])
        diagnostics.append(f"the allocation changed inside the window ({when}): an SRM test against one allocation "
                           f"is not valid across it and units may have moved arms; analyse one allocation period, "
                           f"e.g. --since {iso_time(changes[-1][0])}")
        return None
    if set(current) != arms:
        return None
    return current
