"""The online experiment's results page, rendered from ``AnalysisReport.to_dict()`` (the same object
``abharness analyze --json`` prints) through the Jinja2 template ``results.html.j2``.

The page formats and draws the report's numbers; it computes no statistic of its own. Offline evidence for the same
candidate (the evaluation's ``report.json``, the replay's ``replay.json``) can be put beside the online verdict.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from abharness.errors import ConfigError
from abharness.report import figures
from abharness.report.templating import fmt_num, fmt_p, fmt_pct, render, write_html

__all__ = ["load_json_report", "offline_verdicts", "render_results_html", "results_context", "write_results_html"]

_LEVEL_WORDS = {86_400.0: "day", 3_600.0: "hour"}


def _ci(lo: Any, hi: Any, fmt=lambda v: fmt_num(v, ".3g")) -> str:
    return f"[{fmt(lo)}, {fmt(hi)}]"


def _metric_rows(comps: Mapping[str, Mapping[str, Any]]) -> list[list[Any]]:
    rows = []
    for c in comps.values():
        ctl, trt = c["control"], c["treatment"]
        rows.append([
            c["metric"], f"{fmt_num(ctl['value'])} ± {fmt_num(ctl['se'], '.2g')}",
            f"{fmt_num(trt['value'])} ± {fmt_num(trt['se'], '.2g')}", fmt_num(c["lift"], "+.3g"),
            _ci(c["lift_lower"], c["lift_upper"]), fmt_pct(c["relative_lift"]),
            _ci(c["relative_lower"], c["relative_upper"], fmt_pct), fmt_p(c["p_value"]), fmt_p(c.get("p_holm")),
            fmt_p(c["always_valid_p"]), _ci(c["seq_lower"], c["seq_upper"]),
            f"−{c['variance_reduction']:.1%} var" if c.get("cuped") and c.get("variance_reduction") is not None
            else "—",
        ])
    return rows


def _guardrail_rows(guardrails: Mapping[str, Mapping[str, Any]]) -> list[list[Any]]:
    rows = []
    for g in guardrails.values():
        ni = g.get("non_inferiority")
        if not ni:
            continue
        rel = ni["margin_kind"] == "relative"
        f = fmt_pct if rel else (lambda v: fmt_num(v, "+.4g"))
        passed = isinstance(ni.get("upper"), int | float) and ni["upper"] < ni["margin"]
        rows.append([g["metric"], fmt_num(g["control"]["value"]), fmt_num(g["treatment"]["value"]), f(ni["harm"]),
                     f"{ni['margin']:.0%} relative" if rel else f"{fmt_num(ni['margin'])} absolute", f(ni["upper"]),
                     fmt_p(ni["p_value"]), _ci(ni["seq_lower"], ni["seq_upper"], f),
                     {"badge": "pass" if passed else "inconclusive"}])
    return rows


def _power_rows(power: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    rows = []
    for p in power:
        tgt = p["target_relative_mde"]
        mde_rel = p["mde_relative"]
        rows.append([p["metric"], p["treatment"], f"{p['current_units']:,}",
                     fmt_pct(tgt, signed=False) if tgt is not None else fmt_num(p["target_absolute_mde"]),
                     fmt_num(p["power_now"], ".0%"), fmt_num(p["required_units"], ",.0f"),
                     fmt_pct(mde_rel, signed=False) if mde_rel is not None else fmt_num(p["mde_absolute"]),
                     fmt_num(p.get("design_effect"), ".2f"), fmt_num(p["units_per_day"], ",.0f"),
                     fmt_num(p["days_still_needed"], ".1f")])
    return rows


def _generic_rows(value: Any) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows for a JSON value of unknown shape (list of records, mapping of records or of scalars)."""
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        headers = list(dict.fromkeys(k for v in value for k in v))
        return headers, [[_cell(v.get(h)) for h in headers] for v in value]
    if isinstance(value, Mapping):
        if value and all(isinstance(v, Mapping) for v in value.values()):
            headers = ["", *dict.fromkeys(k for v in value.values() for k in v)]
            return headers, [[k, *(_cell(v.get(h)) for h in headers[1:])] for k, v in value.items()]
        return ["", "value"], [[k, _cell(v)] for k, v in value.items()]
    if isinstance(value, list):
        return ["value"], [[_cell(v)] for v in value]
    return ["value"], [[_cell(value)]]


def _exclusions_view(ex: Any) -> dict[str, Any]:
    """The bot/outlier filters' effect (``ExclusionSummary`` as JSON: per rule units / impressions / clicks per
    arm, units before and after, SRM on all units before the rules); any other shape as a generic table."""
    if not (isinstance(ex, Mapping) and isinstance(ex.get("effects"), list) and "units_before" in ex):
        headers, rows = _generic_rows(ex)
        return {"headers": headers, "rows": rows, "notes": [], "figure": None}
    arms = sorted(ex["units_before"])
    rows = [[e["rule"], *(f"{e['units'].get(a, 0):,} / {fmt_num(e['impressions'].get(a, 0), ',.0f')} / "
                          f"{fmt_num(e['clicks'].get(a, 0), ',.0f')}" for a in arms)] for e in ex["effects"]]
    rows.append(["units before → after", *(f"{ex['units_before'].get(a, 0):,} → {ex['units_after'].get(a, 0):,}"
                                           for a in arms)])
    notes = []
    rules = {k: v for k, v in (ex.get("rules") or {}).items() if v not in (None, False)}
    if rules:
        notes.append("rules: " + ", ".join(f"{k}={v}" for k, v in rules.items()))
    srm = ex.get("srm_before")
    if srm:
        notes.append(f"SRM on all units before the rules: p = {fmt_p(srm.get('p_value'))} "
                     f"({'ALARM' if srm.get('alarm') else 'ok'}); every statistic above uses the filtered units")
    return {"headers": ["rule", *(f"{a} (units / impressions / clicks)" for a in arms)], "rows": rows,
            "notes": notes, "figure": figures.exclusions_figure(ex["effects"], arms) if ex["effects"] else None}


def _layered_view(lay: Mapping[str, Any], alpha: float) -> dict[str, Any]:
    """The layered section: where the experiment sits (or what the holdout measures) and the interaction tests."""
    exp = lay["experiment"]
    if exp.get("holdout"):
        headline = f"{exp['experiment_id']}: {exp['label']}; expected shares {exp['weights']}"
    else:
        headline = (f"experiment of layer {exp['layer']!r}; weights {exp['weights']} within its enrolled population "
                    "(the sample ratio check is computed there)"
                    + (f"; targeting {exp['targeting']}" if exp.get("targeting") else ""))
    rows = []
    for r in lay.get("interactions") or []:
        c = r["check"]
        rows.append([f"{r['experiment_a']} ({r['layer_a']})", f"{r['a_treatment']} vs {r['a_control']}",
                     fmt_num(c["effect_b_in_a_control"], "+.4g"), fmt_num(c["effect_b_in_a_treatment"], "+.4g"),
                     fmt_num(c["interaction"], "+.4g"), _ci(c["lower"], c["upper"]), fmt_p(c["p_value"]),
                     fmt_p(r.get("p_holm")), {"badge": "alarm" if c["alarm"] else "pass"}])
    return {"headline": headline, "rows": rows, "notes": list(lay.get("notes") or []),
            "alarm": any(r["check"]["alarm"] for r in lay.get("interactions") or []), "level": f"{1 - alpha:.0%}"}


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return fmt_num(v)
    if isinstance(v, Mapping | list):
        return json.dumps(v, sort_keys=True)
    return fmt_num(v)


def load_json_report(path: str | Path, default_name: str, option: str) -> dict[str, Any]:
    """A JSON report from a file or from a directory holding ``default_name``; ``ConfigError`` names the fix."""
    p = Path(path)
    if p.is_dir():
        p = p / default_name
    if not p.is_file():
        raise ConfigError(f"{option} {str(path)!r}: no {default_name} there; give the file or the directory "
                          "the command wrote it into")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{option} {str(p)!r}: not a readable JSON report ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{option} {str(p)!r}: expected a JSON object, got {type(data).__name__}")
    return data


def offline_verdicts(*, evaluation: Mapping[str, Any] | None = None,
                     replay: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One card per offline source: its verdict and the numbers behind it, read from its own JSON report."""
    cards: list[dict[str, Any]] = []
    if evaluation is not None:
        checks = evaluation.get("checks", {})
        ret = checks.get("retrieval", {})
        lines = [f"{name}: {c.get('verdict')} ({c.get('headline', '')})" for name, c in checks.items()
                 if isinstance(c, Mapping)]
        cand, base = evaluation.get("candidate", {}), evaluation.get("baseline", {})
        cards.append({"source": "offline evaluation", "verdict": str(ret.get("verdict", "skipped")),
                      "headline": ret.get("headline", "no retrieval check"),
                      "detail": [f"candidate {cand.get('name', '?')} vs baseline {base.get('name', '?')}"
                                 + ("; a blocking check FAILED" if evaluation.get("failed") else "")] + lines})
    if replay is not None:
        agreement = replay.get("agreement") or []
        verdicts = [a.get("verdict") for a in agreement]
        word = "agree" if verdicts and all(v == "agree" for v in verdicts) else (
            "disagree" if "disagree" in verdicts else "inconclusive")
        q = (replay.get("qrels") or {}).get("ndcg@10")
        headline = (f"qrels nDCG@10 delta {fmt_num(q.get('delta'), '+.4f')} "
                    f"{_ci(q.get('ci_low'), q.get('ci_high'), lambda v: fmt_num(v, '+.4f'))} on "
                    f"{replay.get('qrels_queries', '?')} logged queries") if q else (
            f"{replay.get('impressions', '?')} logged impressions replayed")
        detail = [f"{a['offline_source']} {a['offline_metric']} {fmt_num(a['offline_delta'], '+.4f')} vs online "
                  f"{a['online_metric']} {fmt_num(a['online_delta'], '+.4f')}: {a['verdict']}" for a in agreement]
        cards.append({"source": f"replay of {replay.get('experiment_id', '?')}", "verdict": word,
                      "headline": headline, "detail": detail})
    return cards


def results_context(report: Mapping[str, Any], *, offline: Sequence[Mapping[str, Any]] = (),
                    generated_at: float | None = None, live: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything ``results.html.j2`` shows, from the JSON form of an ``AnalysisReport``."""
    d = report
    alpha = d["alpha"]
    level = f"{1 - alpha:.0%}"
    reasons = list(d.get("reasons") or [])
    srm = d.get("srm")
    planned = {a: e for a, e in (srm or {}).get("expected", {}).items()} if srm else {}
    planned_total = sum(planned.values())
    arms = [[a, f"{n:,}", f"{d['impressions'].get(a, 0):,}",
             fmt_pct(planned[a] / planned_total, signed=False) if planned_total and a in planned else "—"]
            for a, n in d["units"].items()]
    treatments = []
    for t, comps in (d.get("by_treatment") or {}).items():
        treatments.append({"name": t, "rows": _metric_rows(comps), "figure": figures.interval_figure(
            comps, alpha, f"{t} vs {d['control']}: lift with {level} intervals (bars) against 0 (dotted)")})
    guardrails = d.get("guardrails") or {}
    bucket = _LEVEL_WORDS.get(float(d.get("traffic_bucket_s") or 86_400.0), "bucket")
    interleaving = d.get("interleaving")
    segments = d.get("segments") or []
    primary = d["primary"]
    ctx: dict[str, Any] = {
        "title": f"Experiment {d['experiment_id']}: {', '.join(d['treatments'])} vs {d['control']}",
        "subtitle": (f"window {fmt_window(d.get('since'), d.get('until'))} · decision basis {d['basis']} · "
                     f"alpha {alpha:g} · primary metric {primary}"),
        "report": d, "level": level, "generated_at": generated_at,
        "decision": d["decision"], "reason": reasons[0] if reasons else "", "more_reasons": reasons[1:],
        "exit_code": d.get("exit_code"), "srm": srm, "arms": arms,
        "treatments": treatments,
        "guardrail_rows": _guardrail_rows(guardrails),
        "guardrail_figure": figures.guardrail_figure(guardrails, alpha) if guardrails else None,
        "timeseries_figure": figures.timeseries_figure(d["timeseries"], primary, alpha) if d.get("timeseries")
        else None,
        "timeseries_rows": [[_date_time(p["until"]), f"{p['units']:,}", fmt_num(p["lift"], "+.4g"),
                             fmt_pct(p["relative_lift"]), _ci(p["lower"], p["upper"]),
                             _ci(p["seq_lower"], p["seq_upper"]), fmt_p(p["always_valid_p"])]
                            for p in d.get("timeseries") or []],
        "traffic_figures": figures.traffic_figures(d["traffic"], planned, bucket) if d.get("traffic") else [],
        "bucket": bucket,
        "power_rows": _power_rows(d.get("power") or []),
        "power_figure": figures.power_figure(d["power"]) if d.get("power") else None,
        "cuped": d.get("cuped"),
        "interleaving": interleaving,
        "interleaving_figure": figures.interleaving_figure(interleaving, alpha) if interleaving else None,
        "segments": segments,
        "segment_rows": [[f"{s['key']}={s['value']}", ", ".join(f"{a} {n:,}" for a, n in s["units"].items()),
                          *(_metric_rows({primary: s["metrics"][primary]})[0][1:8])]
                         for s in segments if primary in s["metrics"]],
        "segment_figure": figures.segment_figure(segments, primary, alpha) if segments else None,
        "exclusions": _exclusions_view(d["exclusions"]) if d.get("exclusions") else None,
        "layered": _layered_view(d["layered"], alpha) if d.get("layered") else None,
        "offline": list(offline),
        "diagnostics": list(d.get("diagnostics") or []),
        "live": live,
    }
    ctx["nav"] = [(a, t) for a, t, show in (
        ("decision", "Decision", True), ("arms", "Arms", True), ("metrics", "Metrics", bool(treatments)),
        ("guardrails", "Guardrails", bool(guardrails)), ("over-time", "Over time", bool(d.get("timeseries"))),
        ("traffic", "Traffic", bool(d.get("traffic"))), ("power", "Power", bool(d.get("power"))),
        ("interleaving", "Interleaving", bool(interleaving)), ("segments", "Segments", bool(segments)),
        ("exclusions", "Excluded units", bool(d.get("exclusions"))), ("layers", "Layers", bool(d.get("layered"))), ("offline", "Offline evidence", bool(offline)),
        ("live", "Allocation & audit", live is not None)) if show]
    return ctx


def _date_time(ts: Any) -> str:
    from abharness.report.templating import fmt_datetime

    return fmt_datetime(ts)


def fmt_window(since: Any, until: Any) -> str:
    """[since, until) as dates and times; open ends as 'start'/'now'."""
    return f"{_date_time(since) if since is not None else 'start'} – {_date_time(until) if until is not None else 'now'}"


def render_results_html(report: Mapping[str, Any], **kwargs: Any) -> str:
    """The page as a string (``kwargs``: ``offline``, ``generated_at``, ``live``, ``plotly_src``, ``refresh_s``)."""
    page_kw = {k: kwargs.pop(k) for k in ("plotly_src", "refresh_s") if k in kwargs}
    return render("results.html.j2", **results_context(report, **kwargs), **page_kw)


def write_results_html(report: Mapping[str, Any], out_dir: Path, *, filename: str = "index.html",
                       inline_js: bool = False, **kwargs: Any) -> Path:
    """Write the page (and ``plotly.min.js`` beside it unless ``inline_js``) into ``out_dir``; returns its path."""
    return write_html(Path(out_dir), filename, "results.html.j2", inline_js=inline_js,
                      **results_context(report, **kwargs))
