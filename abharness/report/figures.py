"""Plotly figures of the results page, drawn from the JSON form of an ``AnalysisReport`` (``report.to_dict()``).

Every coordinate is a number of the report (or a unix time turned into a date); nothing here estimates anything.
Intervals are drawn as horizontal bars from their lower to their upper bound (``base=lower``, length
``upper - lower``: plotly's way of drawing a floating bar) against a line at zero and, for guardrails, a line at the
non-inferiority margin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from abharness.report.html import figure_html

__all__ = [
    "ARM_COLOURS",
    "exclusions_figure",
    "guardrail_figure",
    "interleaving_figure",
    "interval_figure",
    "iso",
    "power_figure",
    "segment_figure",
    "timeseries_figure",
    "traffic_figures",
]

FIXED = "#0969da"
ALWAYS_VALID = "#8250df"
ZERO = "#24292f"
MARGIN = "#cf222e"
ARM_COLOURS = ("#8c959f", "#0969da", "#1a7f37", "#bf8700", "#8250df", "#e16f24")
_MARGIN = {"t": 40, "b": 30, "l": 10, "r": 10}


def iso(ts: float | None) -> str | None:
    """Unix seconds -> ISO 8601 UTC (plotly draws it as a date axis)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M:%S")


def _ok(*xs: Any) -> bool:
    return all(isinstance(x, int | float) for x in xs)


def _bar(fig: go.Figure, label: str, lo: Any, hi: Any, colour: str, *, row: int | None = None,
         legend: bool = False, name: str = "") -> None:
    if not _ok(lo, hi):
        return
    kw = {"row": row, "col": 1} if row is not None else {}
    fig.add_trace(go.Bar(y=[label], x=[hi - lo], base=[lo], orientation="h", marker_color=colour, opacity=0.55,
                         name=name or label, showlegend=legend, hovertemplate=f"{label}: [{lo:.4g}, {hi:.4g}]"
                         "<extra></extra>"), **kw)


def _point(fig: go.Figure, labels: Sequence[str], x: Any, *, row: int | None = None) -> None:
    if not _ok(x):
        return
    kw = {"row": row, "col": 1} if row is not None else {}
    fig.add_trace(go.Scatter(y=list(labels), x=[x] * len(labels), mode="markers", marker={"color": ZERO, "size": 9,
                             "symbol": "line-ns-open", "line": {"width": 3}}, showlegend=False,
                             hovertemplate=f"estimate {x:.4g}<extra></extra>"), **kw)


def _spacing(rows: int, height_px: float, gap_px: float = 48.0) -> float:
    """Vertical spacing (a fraction of the plot height) leaving ``gap_px`` for tick labels and the next title."""
    return min(gap_px / height_px, 1.0 / max(rows - 1, 1) * 0.9) if rows > 1 else 0.0


def interval_figure(comparisons: Mapping[str, Mapping[str, Any]], alpha: float, title: str) -> str:
    """One row per metric: the absolute lift with its fixed-horizon and always-valid intervals against 0."""
    names = list(comparisons)
    level = f"{1 - alpha:.0%}"
    height = 70 + 115 * len(names)
    fig = make_subplots(rows=len(names), cols=1, subplot_titles=[
        f"{n}: {comparisons[n]['label']}" if comparisons[n].get("label") else n for n in names],
        vertical_spacing=_spacing(len(names), height))
    fixed, seq = f"fixed-horizon {level}", f"always-valid {level}"
    for i, n in enumerate(names, start=1):
        c = comparisons[n]
        _bar(fig, seq, c.get("seq_lower"), c.get("seq_upper"), ALWAYS_VALID, row=i, legend=i == 1, name=seq)
        _bar(fig, fixed, c.get("lift_lower"), c.get("lift_upper"), FIXED, row=i, legend=i == 1, name=fixed)
        _point(fig, [fixed, seq], c.get("lift"), row=i)
        fig.add_vline(x=0, line={"color": ZERO, "width": 1, "dash": "dot"}, row=i, col=1)
    fig.update_layout(title=title, height=height, barmode="overlay", margin={"t": 70, "b": 20, "l": 10, "r": 10},
                      legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 1, "xanchor": "right"})
    fig.update_annotations(font_size=12)
    return figure_html(fig)


def guardrail_figure(guardrails: Mapping[str, Mapping[str, Any]], alpha: float) -> str:
    """One row per guardrail, on its harm scale (absolute or relative, as its margin): the fixed-horizon
    interval, the one-sided upper bound, the always-valid interval, zero and the margin."""
    names = [n for n, g in guardrails.items() if g.get("non_inferiority")]
    level = f"{1 - alpha:.0%}"
    titles = []
    for n in names:
        ni = guardrails[n]["non_inferiority"]
        titles.append(f"{n}: harm ({ni['margin_kind']}), margin {ni['margin']:g}")
    height = 80 + 125 * max(len(names), 1)
    fig = make_subplots(rows=max(len(names), 1), cols=1, subplot_titles=titles or ["no guardrail"],
                        vertical_spacing=_spacing(len(names), height))
    fixed, seq, upper = f"fixed-horizon {level}", f"always-valid {level}", f"one-sided {level} upper bound"
    for i, n in enumerate(names, start=1):
        g, ni = guardrails[n], guardrails[n]["non_inferiority"]
        rel = ni["margin_kind"] == "relative"
        lo, hi = (g.get("relative_lower"), g.get("relative_upper")) if rel else (g.get("lift_lower"),
                                                                                g.get("lift_upper"))
        if g.get("higher_is_better") and _ok(lo, hi):  # harm is a decrease: show it on the harm axis
            lo, hi = -hi, -lo
        _bar(fig, seq, ni.get("seq_lower"), ni.get("seq_upper"), ALWAYS_VALID, row=i, legend=i == 1, name=seq)
        _bar(fig, fixed, lo, hi, FIXED, row=i, legend=i == 1, name=fixed)
        _point(fig, [fixed, seq], ni.get("harm"), row=i)
        if _ok(ni.get("upper")):
            fig.add_trace(go.Scatter(y=[fixed], x=[ni["upper"]], mode="markers", name=upper, showlegend=i == 1,
                                     marker={"symbol": "triangle-left", "size": 11, "color": FIXED},
                                     hovertemplate=f"{upper}: {ni['upper']:.4g}<extra></extra>"), row=i, col=1)
        fig.add_vline(x=0, line={"color": ZERO, "width": 1, "dash": "dot"}, row=i, col=1)
        fig.add_vline(x=ni["margin"], line={"color": MARGIN, "width": 2, "dash": "dash"}, row=i, col=1,
                      annotation_text="margin", annotation_font_color=MARGIN)
    fig.update_layout(title="Guardrails: harm against the non-inferiority margin (right of the red line = harm "
                      "beyond the margin)", height=height, barmode="overlay",
                      margin={"t": 80, "b": 60, "l": 10, "r": 10},
                      legend={"orientation": "h", "y": -0.04, "yanchor": "top", "x": 0, "xanchor": "left"})
    fig.update_annotations(font_size=12)
    return figure_html(fig)


def timeseries_figure(points: Sequence[Mapping[str, Any]], metric: str, alpha: float) -> str:
    """Cumulative lift at each look (x = date of the look) with the fixed-horizon band and the always-valid
    confidence sequence around it."""
    x = [iso(p["until"]) for p in points]
    level = f"{1 - alpha:.0%}"
    fig = go.Figure()
    for lo, hi, colour, name in (("seq_lower", "seq_upper", ALWAYS_VALID, (f"always-valid {level} (confidence "
                                  "sequence)")), ("lower", "upper", FIXED, f"fixed-horizon {level}")):
        fig.add_trace(go.Scatter(x=x, y=[p[hi] for p in points], mode="lines", line={"width": 0, "color": colour},
                                 showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=x, y=[p[lo] for p in points], mode="lines", line={"width": 0, "color": colour},
                                 fill="tonexty", fillcolor=_rgba(colour, 0.22), name=name))
    fig.add_trace(go.Scatter(x=x, y=[p["lift"] for p in points], mode="lines+markers", name="cumulative lift",
                             line={"color": ZERO}, customdata=[[p["units"]] for p in points],
                             hovertemplate="%{x}<br>lift %{y:.4g}<br>%{customdata[0]} units<extra></extra>"))
    fig.add_hline(y=0, line={"color": ZERO, "width": 1, "dash": "dot"})
    fig.update_layout(title=f"Cumulative lift of {metric} (treatment − control) over time", height=380,
                      xaxis_title="date (UTC)", yaxis_title=f"lift in {metric}", margin={"t": 40, "b": 40, "l": 60, "r": 10},
                      legend={"orientation": "h", "y": -0.25})
    return figure_html(fig)


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def traffic_figures(buckets: Sequence[Mapping[str, Any]], planned: Mapping[str, float],
                    bucket_label: str) -> list[str]:
    """Two figures. Per arm per bucket: units (active in the bucket) and impressions; then each arm's share of
    the units that arrived in the bucket, stacked to 100 % by plotly (``barnorm``), against the planned split
    (dashed lines at the cumulative planned shares)."""
    arms = list(dict.fromkeys(b["arm"] for b in buckets))
    counts = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12, subplot_titles=(
        f"units per arm per {bucket_label}", f"impressions per arm per {bucket_label}"))
    share = go.Figure()
    for i, arm in enumerate(arms):
        colour = ARM_COLOURS[i % len(ARM_COLOURS)]
        rows = [b for b in buckets if b["arm"] == arm]
        x = [iso(b["start"]) for b in rows]
        for r, key in ((1, "units"), (2, "impressions")):
            counts.add_trace(go.Bar(x=x, y=[b[key] for b in rows], name=arm, legendgroup=arm, showlegend=r == 1,
                                    marker_color=colour), row=r, col=1)
        share.add_trace(go.Bar(x=x, y=[b["new_units"] for b in rows], name=arm, marker_color=colour,
                               customdata=[b["new_units"] for b in rows],
                               hovertemplate=f"{arm}: %{{customdata}} new units (%{{y:.1%}})<extra></extra>"))
    counts.update_layout(barmode="group", height=460, margin={"t": 40, "b": 30, "l": 60, "r": 10},
                         legend={"orientation": "h", "y": 1.08, "yanchor": "bottom"})
    total = sum(planned.values())
    cumulative = 0.0
    for arm in arms[:-1]:
        if arm in planned and total > 0:
            cumulative += planned[arm] / total
            share.add_hline(y=cumulative, line={"color": ZERO, "width": 2, "dash": "dash"},
                            annotation_text=f"planned {arm} {planned[arm] / total:.0%}",
                            annotation_position="top left")
    share.update_layout(title=f"Share of new units per arm per {bucket_label} vs the planned split (dashed)",
                        barmode="stack", barnorm="fraction", height=300, margin={"t": 40, "b": 30, "l": 60, "r": 10},
                        yaxis={"tickformat": ".0%", "range": [0, 1]}, legend={"orientation": "h", "y": -0.25})
    return [figure_html(counts), figure_html(share)]


def exclusions_figure(effects: Sequence[Mapping[str, Any]], arms: Sequence[str]) -> str:
    """Units each filter rule took out, per arm (grouped bars)."""
    fig = go.Figure([go.Bar(x=[e["rule"] for e in effects], y=[e["units"].get(a, 0) for e in effects], name=a,
                            marker_color=ARM_COLOURS[i % len(ARM_COLOURS)]) for i, a in enumerate(arms)])
    fig.update_layout(title="Units excluded per rule and arm", barmode="group", height=300,
                      margin={"t": 40, "b": 30, "l": 50, "r": 10}, legend={"orientation": "h", "y": -0.2})
    return figure_html(fig)


def power_figure(power: Sequence[Mapping[str, Any]]) -> str:
    """Units so far against units needed for the target MDE, per metric and treatment."""
    labels = [f"{p['metric']} ({p['treatment']})" for p in power]
    fig = go.Figure([
        go.Bar(y=labels, x=[p["current_units"] for p in power], orientation="h", name="units so far",
               marker_color=FIXED),
        go.Bar(y=labels, x=[p["required_units"] for p in power], orientation="h", name="units needed",
               marker_color="#8c959f"),
    ])
    fig.update_layout(title="Units so far vs units needed for the target MDE", barmode="group",
                      height=120 + 50 * len(labels), margin={"t": 40, "b": 30, "l": 10, "r": 10}, xaxis_title="units",
                      legend={"orientation": "h", "y": -0.3})
    fig.update_yaxes(automargin=True)
    return figure_html(fig)


def interleaving_figure(r: Mapping[str, Any], alpha: float) -> str:
    """The interleaving preference with its fixed and always-valid intervals against 0."""
    level = f"{1 - alpha:.0%}"
    fig = go.Figure()
    fixed, seq = f"fixed-horizon {level}", f"always-valid {level}"
    _bar(fig, seq, r.get("seq_lower"), r.get("seq_upper"), ALWAYS_VALID, legend=True)
    _bar(fig, fixed, r.get("preference_lower"), r.get("preference_upper"), FIXED, legend=True)
    _point(fig, [fixed, seq], r.get("preference"))
    fig.add_vline(x=0, line={"color": ZERO, "width": 1, "dash": "dot"})
    fig.update_layout(title=f"Interleaving preference for {r['treatment']} over {r['control']} (> 0: "
                      f"{r['treatment']} wins more)", height=230, barmode="overlay", margin={"t": 40, "b": 30, "l": 10,
                                                                                                   "r": 10},
                      showlegend=False)
    fig.update_yaxes(automargin=True)
    return figure_html(fig)


def segment_figure(segments: Sequence[Mapping[str, Any]], metric: str, alpha: float) -> str:
    """The lift of ``metric`` per segment value, fixed-horizon and always-valid intervals against 0."""
    level = f"{1 - alpha:.0%}"
    fig = go.Figure()
    for seg in segments:
        c = seg["metrics"].get(metric)
        if c is None:
            continue
        label = f"{seg['key']}={seg['value']}"
        for lo, hi, colour, kind in (("seq_lower", "seq_upper", ALWAYS_VALID, "always-valid"),
                                     ("lift_lower", "lift_upper", FIXED, "fixed-horizon")):
            if _ok(c.get(lo), c.get(hi)):
                fig.add_trace(go.Bar(y=[label], x=[c[hi] - c[lo]], base=[c[lo]], orientation="h", opacity=0.55,
                                     marker_color=colour, name=f"{kind} {level}", offsetgroup=kind,
                                     showlegend=seg is segments[0]))
        if _ok(c.get("lift")):
            fig.add_trace(go.Scatter(y=[label], x=[c["lift"]], mode="markers", showlegend=False,
                                     marker={"color": ZERO, "size": 9, "symbol": "line-ns-open", "line": {"width": 3}}))
    fig.add_vline(x=0, line={"color": ZERO, "width": 1, "dash": "dot"})
    fig.update_layout(title=f"Lift of {metric} per segment (descriptive: no decision is taken on segments)",
                      height=120 + 60 * len(segments), barmode="group", margin={"t": 40, "b": 30, "l": 10, "r": 10},
                      legend={"orientation": "h", "y": -0.2})
    fig.update_yaxes(automargin=True)
    return figure_html(fig)
