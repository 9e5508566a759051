"""The shared Jinja2 environment of every HTML page (analysis results, replay, evaluation, demo index, live UI).

All pages extend ``templates/base.html.j2`` (one stylesheet, header, navigation, how plotly is loaded) and use the
macros of ``templates/macros.html.j2`` (tables, badges, figures). Autoescaping is on: values are escaped unless a
template marks them ``|safe`` (only plotly's own figure markup is). Filters format numbers the same way on every
page; they never compute statistics (pages render the numbers of a report, they do not derive new ones).

Plotly is never loaded from a CDN: ``write_html`` writes ``plotly.min.js`` from the installed plotly package beside
the page (or inlines it with ``inline_js=True``), so pages open offline from disk.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

__all__ = [
    "PLOTLY_JS",
    "environment",
    "fmt_date",
    "fmt_datetime",
    "fmt_num",
    "fmt_p",
    "fmt_pct",
    "plotly_js",
    "render",
    "write_html",
]

PLOTLY_JS = "plotly.min.js"


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and not math.isfinite(x))


def fmt_num(x: Any, spec: str = ".4g") -> str:
    """A number with a format spec; None/nan/inf as an em dash; bools as yes/no; other values as text."""
    if _missing(x):
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int | float):
        return format(x, spec)
    return str(x)


def fmt_pct(x: Any, signed: bool = True) -> str:
    """0.0123 -> '+1.23%'."""
    if _missing(x):
        return "—"
    return f"{x:+.2%}" if signed else f"{x:.2%}"


def fmt_p(x: Any) -> str:
    """A p-value: '<1e-4' below 1e-4, else four decimals."""
    if _missing(x):
        return "—"
    return "<1e-4" if x < 1e-4 else f"{x:.4f}"


def fmt_datetime(ts: Any) -> str:
    """Unix seconds -> '2026-12-02 18:54 UTC'."""
    if _missing(ts):
        return "—"
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M UTC")


def fmt_date(ts: Any) -> str:
    """Unix seconds -> '2026-12-02' (UTC)."""
    if _missing(ts):
        return "—"
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d")


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The one Jinja2 environment (templates from the package, autoescape on, undefined names fail loudly)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("abharness.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=fmt_num, pct=fmt_pct, p=fmt_p, date=fmt_date, datetime=fmt_datetime)
    return env


def render(template: str, **context: Any) -> str:
    """Render ``template`` (a name under ``templates/``) with ``context``. ``plotly_src`` defaults to the file
    written beside the page; ``plotly_inline`` (the library's source) replaces it when given."""
    context.setdefault("plotly_src", PLOTLY_JS)
    context.setdefault("plotly_inline", None)
    context.setdefault("refresh_s", None)
    context.setdefault("nav", [])
    context.setdefault("subtitle", "")
    return environment().get_template(template).render(**context)


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """plotly.js from the installed plotly package (no network)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def write_html(out_dir: Path, filename: str, template: str, *, inline_js: bool = False, **context: Any) -> Path:
    """Render ``template`` into ``out_dir/filename``; write ``plotly.min.js`` beside it unless ``inline_js``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if inline_js:
        context["plotly_inline"] = plotly_js()
    else:
        js = out_dir / PLOTLY_JS
        if not js.is_file():
            js.write_text(plotly_js(), encoding="utf-8")
    path = out_dir / filename
    path.write_text(render(template, **context), encoding="utf-8")
    return path
