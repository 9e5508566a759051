"""The offline evaluation report: one HTML section per check, built from the ``report.json`` payload alone.

Each check becomes a list of blocks (tables as rows of cells, plotly figures, notes) that the Jinja2 template
``evaluation.html.j2`` lays out in the shared page shell; no markup is assembled here except plotly's own figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from abharness.report.html import figure_html, fmt
from abharness.report.templating import write_html

__all__ = ["render_evaluation_html", "SECTION_TITLES"]

SECTION_TITLES = {
    "retrieval": "1. Retrieval (in-domain)",
    "sts": "2. Semantic similarity",
    "classification": "3. Classification (frozen embeddings)",
    "clustering": "4. Clustering",
    "geometry": "5. Embedding geometry",
    "probes": "6. Probe pairs",
    "leakage": "7. Leakage",
    "overfitting": "8. Overfitting (out-of-domain)",
    "maps": "9. Embedding maps",
}
_COLORS = {"baseline": "#8c959f", "candidate": "#0969da"}


Block = dict[str, Any]


def _table(headers: list[str], rows: list[list[Any]], left: tuple[int, ...] = (0,)) -> Block:
    """A table block; cells are formatted like every report table (``fmt``) unless they are badge dicts."""
    return {"kind": "table", "headers": headers, "left": left,
            "rows": [[c if isinstance(c, dict) else fmt(c) for c in r] for r in rows]}


def _figure(fig: Any) -> Block:
    return {"kind": "figure", "markup": figure_html(fig)}


def _note(text: str) -> Block:
    return {"kind": "note", "text": text}


def _badge(verdict: str) -> dict[str, str]:
    return {"badge": verdict}


def _ci(ci: list[Any] | None) -> str:
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "—"


def _metric_rows(rows: list[dict[str, Any]]) -> Block:
    return _table(
        ["metric", "baseline", "candidate", "delta", "95% CI", "p", "Holm p", "wins", "ties", "losses", "verdict"],
        [[r["metric"], r["baseline"], r["candidate"], r["delta"], _ci(r["ci"]), r["p_value"], r["p_holm"], r["wins"],
          r["ties"], r["losses"], _badge(r["verdict"])] for r in rows],
    )


def _bars(categories: list[str], base: list[Any], cand: list[Any], title: str) -> Block:
    fig = go.Figure([go.Bar(name=n, x=categories, y=v, marker_color=_COLORS[n])
                     for n, v in (("baseline", base), ("candidate", cand))])
    fig.update_layout(barmode="group", title=title, height=340, margin=dict(t=40, b=30, l=40, r=10))
    return _figure(fig)


def _retrieval(c: dict[str, Any]) -> list[Block]:
    rows = c["metrics"]
    blocks = [_metric_rows(rows),
              _bars([r["metric"] for r in rows], [r["baseline"] for r in rows], [r["candidate"] for r in rows],
                    f"{c.get('dataset', '')} — mean over {c['n_queries']} queries")]
    deltas = c.get("per_query_delta") or []
    if deltas:
        fig = go.Figure(go.Histogram(x=deltas, nbinsx=40, marker_color="#0969da"))
        fig.update_layout(title=f"per-query change in {c['primary_metric']} (candidate − baseline)", height=300,
                          margin=dict(t=40, b=30, l=40, r=10))
        blocks.append(_figure(fig))
    if c["worst_queries"]:
        blocks.append({"kind": "heading", "text": f"Queries that lost most ({c['primary_metric']})"})
        blocks.append(_table(["query id", "query", "baseline", "candidate", "delta"],
                             [[w["query_id"], w["query"], w["baseline"], w["candidate"], w["delta"]]
                              for w in c["worst_queries"]], left=(0, 1)))
    return blocks


def _sts(c: dict[str, Any]) -> list[Block]:
    rows, names, err = [], [], {"baseline": [], "candidate": []}
    for name, v in c["sets"].items():
        names.append(name)
        for role in ("baseline", "candidate"):
            m = v[role]
            rows.append([name, role, v["n_pairs"], m["spearman"], _ci(m["spearman_ci"]), m["pearson"],
                         _ci(m["pearson_ci"])])
            err[role].append(m)
        rows.append([name, "Δ Spearman", "", v["spearman_delta"], _ci(v["spearman_delta_ci"]), "",
                     _badge(v["verdict"])])
    fig = go.Figure()
    for role in ("baseline", "candidate"):
        ys = [m["spearman"] for m in err[role]]
        fig.add_bar(name=role, x=names, y=ys, marker_color=_COLORS[role], error_y=dict(
            type="data", symmetric=False, array=[(m["spearman_ci"][1] or 0) - y for m, y in zip(err[role], ys)],
            arrayminus=[y - (m["spearman_ci"][0] or 0) for m, y in zip(err[role], ys)]))
    fig.update_layout(barmode="group", title="Spearman (cosine vs gold), bootstrap 95% CI", height=320,
                      margin=dict(t=40, b=30, l=40, r=10))
    return [_table(["set", "model", "pairs", "Spearman", "95% CI", "Pearson", "95% CI"], rows, left=(0, 1)),
            _figure(fig)]


def _classification(c: dict[str, Any]) -> list[Block]:
    rows = [[r, c[r]["accuracy"], c[r]["macro_f1"]] for r in ("baseline", "candidate")]
    rows.append(["delta", c["accuracy_delta"], c["macro_f1_delta"]])
    return [_table(["model", "accuracy", "macro-F1"], rows),
            _note(f"train {c['n_train']} ({'stratified sample' if c.get('train_sampled') else 'all'}), test "
                  f"{c['n_test']}; exact McNemar p = {fmt(c['p_value'])}")]


def _clustering(c: dict[str, Any]) -> list[Block]:
    rows = [[r, c[r]["v_measure"], c[r]["adjusted_rand"]] for r in ("baseline", "candidate")]
    rows.append(["delta", c["v_measure_delta"], c["adjusted_rand_delta"]])
    return [_table(["model", "V-measure", "adjusted Rand"], rows),
            _note(f"k-means, k = {c['k']}, {c['n_items']} items; descriptive (no significance test)")]


def _geometry(c: dict[str, Any]) -> list[Block]:
    keys = [k for k in ("alignment_qrels", "alignment_sts", "uniformity_corpus", "uniformity_sts", "anisotropy_corpus")
            if k in c["baseline"]]
    table = _table(["quantity (lower = better)", "baseline", "candidate", "delta"],
                   [[k, c["baseline"][k], c["candidate"][k],
                     (c["candidate"][k] - c["baseline"][k]) if None not in (c["baseline"][k], c["candidate"][k])
                     else None] for k in keys])
    fig = go.Figure([go.Scatter(x=[c[r]["uniformity_corpus"]], y=[c[r]["alignment_qrels"]], mode="markers+text",
                                text=[r], textposition="top center", name=r, marker=dict(size=14, color=_COLORS[r]))
                     for r in ("baseline", "candidate")])
    fig.update_layout(title="alignment (qrels pairs) vs uniformity (corpus), Wang & Isola 2020",
                      xaxis_title="uniformity (t=2)", yaxis_title="alignment (α=2)", height=340,
                      margin=dict(t=40, b=40, l=50, r=10))
    return [table, _figure(fig), _note(f"{c['n_qrels_pairs']} qrels pairs, {c['n_sts_pairs']} STS pairs with gold "
                                       "≥ threshold; anisotropy = mean cosine of random corpus pairs")]


def _probes(c: dict[str, Any]) -> list[Block]:
    pairs = c["pairs"]
    table = _table(["expect", "text A", "text B", "cos baseline", "cos candidate", "Δ", "as expected"],
                   [[p["expectation"], p["a"], p["b"], p["cos_baseline"], p["cos_candidate"], p["delta"],
                     p["as_expected"]] for p in pairs], left=(0, 1, 2))
    fig = go.Figure()
    labels = [f"{p['a']} / {p['b']}"[:60] for p in pairs]
    for p, label in zip(pairs, labels):
        color = "#1a7f37" if p["as_expected"] else "#cf222e"
        fig.add_trace(go.Scatter(x=[p["cos_baseline"], p["cos_candidate"]], y=[label, label], mode="lines+markers",
                                 line=dict(color=color), marker=dict(symbol=["circle", "arrow-right"], size=9),
                                 showlegend=False, hovertext=f"{p['expectation']}: {p['delta']:+.3f}"))
    fig.update_layout(title="probe pair cosine: baseline ● → candidate ▶ (green = moved as expected)",
                      height=max(300, 22 * len(pairs)), xaxis_title="cosine", margin=dict(t=40, b=40, l=320, r=10))
    return [table, _note(f"probe file: {c.get('file', '')}"), _figure(fig)]


def _leakage(c: dict[str, Any]) -> list[Block]:
    blocks = [_table(["", "value"], [
        ["test queries", c["n_test_queries"]], ["exact (normalised hash)", c.get("exact_count", 0)],
        ["near duplicates (cosine ≥ %s)" % fmt(c.get("near_duplicate_cosine"), 2), c.get("near_count", 0)],
        ["leaked fraction", c["leaked_fraction"]], ["allowed fraction", c.get("max_leaked_fraction")],
        ["test queries with relevant docs seen in training", c.get("doc_overlap_queries")],
        ["distinct such documents", c.get("doc_overlap_docs")]])]
    cases = c["exact"] + c["near"]
    if cases:
        blocks.append({"kind": "heading", "text": "Leaked queries"})
        blocks.append(_table(["kind", "test query", "training query", "cosine"],
                             [[x["kind"], x["query"], x.get("train_query") or "(same text)", x.get("cosine")]
                              for x in cases], left=(0, 1, 2)))
    clean = c.get("retrieval_without_leaked")
    if clean:
        blocks.append({"kind": "heading", "text": f"Retrieval with leaked queries removed ({clean['n_queries']} "
                                                  "queries)"})
        blocks.append(_metric_rows(clean["metrics"]))
    blocks.extend(_note(n) for n in c.get("notes", []))
    return blocks


def _overfitting(c: dict[str, Any]) -> list[Block]:
    rows = [[n, v["n_queries"], v["baseline"], v["candidate"], v["delta"], _ci(v["ci"]), v["p_value"],
             "FLAGGED" if v["flagged"] else "ok"] for n, v in c["sets"].items()]
    names = list(c["sets"])
    return [{"kind": "para", "text": f"in-domain change in {c['metric']}: {fmt(c['in_domain_delta'])}; flag when an "
                                     f"out-of-domain change is below −{fmt(c['margin'], 3)}"},
            _table(["collection", "queries", "baseline", "candidate", "delta", "95% CI", "p", "flag"], rows),
            _bars(names, [c["sets"][n]["baseline"] for n in names], [c["sets"][n]["candidate"] for n in names],
                  f"out-of-domain {c['metric']}")]

def _maps(c: dict[str, Any]) -> list[Block]:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("baseline", "candidate"))
    labels = c["labels"]
    palette = ["#0969da", "#cf222e", "#1a7f37", "#bf8700", "#8250df", "#57606a", "#e16f24", "#1b7c83"]
    for col, role in enumerate(("baseline", "candidate"), start=1):
        pts = c[role]["points"]
        for i, lab in enumerate(sorted(set(labels))):
            idx = [j for j, l in enumerate(labels) if l == lab]
            fig.add_trace(go.Scattergl(x=[pts[j][0] for j in idx], y=[pts[j][1] for j in idx], mode="markers",
                                       name=lab, legendgroup=lab, showlegend=col == 1,
                                       marker=dict(size=5, color=palette[i % len(palette)], opacity=0.7),
                                       hovertext=[c["texts"][j] for j in idx]), row=1, col=col)
        probes, n = c[role]["probes"], len(c.get("probe_pairs", []))
        for k, (expect, a, b) in enumerate(c.get("probe_pairs", [])):
            pa, pb = probes[k], probes[n + k]
            fig.add_trace(go.Scatter(x=[pa[0], pb[0]], y=[pa[1], pb[1]], mode="lines+markers", showlegend=False,
                                     line=dict(color="#24292f" if expect == "closer" else "#bf8700", width=1),
                                     marker=dict(size=7, symbol="diamond"), hovertext=[a, b]), row=1, col=col)
    fig.update_layout(height=520, title=f"{c['method'].upper()} of {c['n_points']} labelled texts; probe pairs as "
                      "segments (black = expected closer, amber = expected apart)", margin=dict(t=60, b=20, l=20, r=10))
    return [_figure(fig)]


_RENDER = {"retrieval": _retrieval, "sts": _sts, "classification": _classification, "clustering": _clustering,
           "geometry": _geometry, "probes": _probes, "leakage": _leakage, "overfitting": _overfitting, "maps": _maps}


def render_evaluation_html(payload: dict[str, Any], out_dir: Path) -> Path:
    """Write ``report.html`` (+ ``plotly.min.js``) for a validated ``report.json`` payload; returns the page path."""
    b, cnd = payload["baseline"], payload["candidate"]
    checks = payload["checks"]
    sections = [{"anchor": name, "title": SECTION_TITLES[name], "verdict": c["verdict"], "headline": c["headline"],
                 "blocks": [] if c["verdict"] == "skipped" else _RENDER[name](c)} for name, c in checks.items()]
    return write_html(
        Path(out_dir), "report.html", "evaluation.html.j2",
        title="abharness offline evaluation",
        subtitle=f"baseline {b['name']} ({b['fingerprint']}) vs candidate {cnd['name']} ({cnd['fingerprint']})"
                 f" · {payload['created_at']}"
                 + (f" · SLICE: --limit {payload['limit']}, not the full data sets" if payload.get("limit") else ""),
        nav=[("summary", "Summary")] + [(s["anchor"], s["title"]) for s in sections],
        summary=[[SECTION_TITLES[n], _badge(c["verdict"]), c["headline"]] for n, c in checks.items()],
        timing=", ".join(f"{k} {v:.1f}s" for k, v in payload["timings"].items()),
        failed=bool(payload["failed"]), sections=sections,
    )
