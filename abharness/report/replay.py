"""The replay page, rendered from ``ReplayReport.to_dict()`` (the same payload as ``replay.json``) through the
Jinja2 template ``replay.html.j2``, with plots: replayed vs online lift, offline deltas, IR deltas against click
judgments and qrels, ranking overlap of the most different queries, and offline/online agreement.

Only formats and draws the report's numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from abharness.report.figures import ALWAYS_VALID, ARM_COLOURS, FIXED, ZERO
from abharness.report.html import figure_html
from abharness.report.templating import fmt_num, fmt_p, write_html

__all__ = ["replay_context", "write_replay_html"]


def _ci(lo: Any, hi: Any) -> str:
    return f"[{fmt_num(lo, '+.4f')}, {fmt_num(hi, '+.4f')}]"


def _ok(*xs: Any) -> bool:
    return all(isinstance(x, int | float) for x in xs)


def _forest(rows: Sequence[tuple[str, Any, Any, Any, str, str]], title: str, x_title: str) -> str:
    """Horizontal interval bars (lower..upper) with the estimate, one row per (label, estimate, lower, upper,
    colour, legend group), against 0."""
    fig = go.Figure()
    seen: set[str] = set()
    for label, est, lo, hi, colour, group in rows:
        if _ok(lo, hi):
            fig.add_trace(go.Bar(y=[label], x=[hi - lo], base=[lo], orientation="h", marker_color=colour,
                                 opacity=0.55, name=group, legendgroup=group, showlegend=group not in seen,
                                 hovertemplate=f"{label}: [{lo:.4g}, {hi:.4g}]<extra></extra>"))
            seen.add(group)
        if _ok(est):
            fig.add_trace(go.Scatter(y=[label], x=[est], mode="markers", showlegend=False, marker={
                "color": ZERO, "size": 9, "symbol": "line-ns-open", "line": {"width": 3}},
                hovertemplate=f"{label}: {est:.4g}<extra></extra>"))
    fig.add_vline(x=0, line={"color": ZERO, "width": 1, "dash": "dot"})
    fig.update_layout(title=title, height=110 + 42 * len(rows), barmode="overlay", xaxis_title=x_title,
                      margin={"t": 40, "b": 40, "l": 10, "r": 10}, legend={"orientation": "h", "y": -0.25})
    fig.update_yaxes(automargin=True, autorange="reversed")
    return figure_html(fig)


def _online_figure(d: Mapping[str, Any]) -> str | None:
    rows = []
    for m, c in d["replayed_online"].items():
        rows.append((f"{m} replayed", c["lift"], c["lift_lower"], c["lift_upper"], FIXED, "replayed lists"))
        on = d.get("online", {}).get(m)
        if on:
            rows.append((f"{m} online", on["lift"], on["lift_lower"], on["lift_upper"], ALWAYS_VALID, "online"))
    return _forest(rows, "Lift recomputed from the replayed lists vs the online analysis (95% CI)",
                   "lift (treatment − control)") if rows else None


def _paired_figure(table: Mapping[str, Mapping[str, Any]], title: str) -> str | None:
    rows = [(m, c["delta"], c["ci_low"], c["ci_high"], FIXED, "95% CI") for m, c in table.items()]
    return _forest(rows, title, "delta (treatment − control)") if rows else None


def _overlap_figure(d: Mapping[str, Any]) -> str | None:
    worst = d.get("most_different") or []
    if not worst:
        return None
    labels = [o["query"][:60] for o in worst]
    fig = go.Figure([
        go.Bar(y=labels, x=[o["rbo"] for o in worst], orientation="h", name="RBO (p=0.9)", marker_color=FIXED),
        go.Bar(y=labels, x=[o["jaccard"] for o in worst], orientation="h", name=f"Jaccard@{d['k']}",
               marker_color=ARM_COLOURS[0]),
    ])
    fig.add_vline(x=d["overlap_mean_rbo"], line={"color": FIXED, "dash": "dash"}, annotation_text="mean RBO")
    fig.update_layout(title="Queries where the arms' rankings differ most (1 = identical lists)", barmode="group",
                      height=120 + 44 * len(worst), xaxis={"range": [0, 1]}, margin={"t": 40, "b": 30, "l": 10, "r": 10},
                      legend={"orientation": "h", "y": -0.15})
    fig.update_yaxes(automargin=True, autorange="reversed")
    return figure_html(fig)


def _agreement_figure(d: Mapping[str, Any]) -> str | None:
    rows = []
    for a in d.get("agreement") or []:
        name = f"{a['offline_source']} {a['offline_metric']} / {a['online_metric']}"
        rows.append((f"offline: {name}", a["offline_delta"], a["offline_lower"], a["offline_upper"], FIXED,
                     "offline"))
        rows.append((f"online: {name}", a["online_delta"], a["online_lower"], a["online_upper"], ALWAYS_VALID,
                     "online"))
    return _forest(rows, "Offline vs online: do the intervals point the same way?", "delta") if rows else None


def replay_context(d: Mapping[str, Any]) -> dict[str, Any]:
    """Everything ``replay.html.j2`` shows, from ``ReplayReport.to_dict()``."""
    online = d.get("online") or {}
    replayed = [[m, fmt_num(c["control"]["value"]), fmt_num(c["treatment"]["value"]), fmt_num(c["lift"], "+.4f"),
                 _ci(c["lift_lower"], c["lift_upper"]),
                 fmt_num(online[m]["lift"], "+.4f") if m in online else "—",
                 _ci(online[m]["lift_lower"], online[m]["lift_upper"]) if m in online else "—"]
                for m, c in d["replayed_online"].items()]
    offline = [[m, fmt_num(x["control"]), fmt_num(x["treatment"]), fmt_num(x["delta"], "+.4f"),
                _ci(x["lower"], x["upper"]), fmt_p(x["p_value"])] for m, x in d["offline_click"].items()]
    ir = []
    for key, title in (("coec", "COEC click judgments"), ("qrels", f"qrels ({d.get('qrels_queries', 0)} queries)")):
        table = d.get(key) or {}
        if table:
            ir.append({"title": title, "figure": _paired_figure(table, f"IR metrics per query against {title}: "
                                                                     "delta with 95% CI"),
                       "rows": [[m, fmt_num(c["baseline"]), fmt_num(c["candidate"]), fmt_num(c["delta"], "+.4f"),
                                 _ci(c["ci_low"], c["ci_high"]), fmt_p(c.get("p_holm")),
                                 f"{c['wins']}/{c['ties']}/{c['losses']}"] for m, c in table.items()]})
    verdicts = [a["verdict"] for a in d.get("agreement") or []]
    return {
        "title": f"Replay of {d['experiment_id']}",
        "subtitle": f"logged queries re-run through both arms: control {d['control']}, treatment {d['treatment']}",
        "report": d,
        "overall": ("agree" if verdicts and all(v == "agree" for v in verdicts) else
                    "disagree" if "disagree" in verdicts else "inconclusive"),
        "replayed_rows": replayed, "online_figure": _online_figure(d),
        "offline_rows": offline,
        "offline_figure": _forest([(m, x["delta"], x["lower"], x["upper"], FIXED, "95% CI")
                                   for m, x in d["offline_click"].items()],
                                  "Offline deltas: both arms' replayed lists on every logged impression (clicks as "
                                  "labels)", "delta (treatment − control)") if d["offline_click"] else None,
        "ir": ir,
        "overlap_figure": _overlap_figure(d),
        "overlap_rows": [[o["query"], o["impressions"], fmt_num(o["rbo"], ".3f"), fmt_num(o["jaccard"], ".3f"),
                          " ".join(o["control_top"]), " ".join(o["treatment_top"])]
                         for o in d.get("most_different") or []],
        "agreement_figure": _agreement_figure(d),
        "agreement_rows": [[a["offline_source"], a["offline_metric"],
                            f"{fmt_num(a['offline_delta'], '+.4f')} {_ci(a['offline_lower'], a['offline_upper'])}",
                            a["online_metric"],
                            f"{fmt_num(a['online_delta'], '+.4f')} {_ci(a['online_lower'], a['online_upper'])}",
                            {True: "same", False: "opposite", None: "—"}[a["sign_agrees"]],
                            fmt_num(a["magnitude_ratio"], ".2f"), {"badge": a["verdict"]}]
                           for a in d.get("agreement") or []],
        "nav": [("replay-summary", "Summary"), ("replayed", "Replayed vs online"), ("offline", "Offline deltas"),
                *([("ir", "IR metrics")] if ir else []), ("overlap", "Ranking overlap"),
                ("agreement", "Agreement")],
    }


def write_replay_html(d: Mapping[str, Any], out_dir: Path, filename: str = "replay.html") -> Path:
    """Write the replay page (and ``plotly.min.js`` beside it) into ``out_dir``."""
    return write_html(Path(out_dir), filename, "replay.html.j2", **replay_context(d))
