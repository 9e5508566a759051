"""Two small pieces every page shares: number formatting for table cells (``fmt``) and a plotly figure as the
``<div>`` plotly makes for it (``figure_html``; the library itself is loaded once by the page, never from a CDN).

Page markup lives in the Jinja2 templates (:mod:`abharness.report.templating`), not here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["figure_html", "fmt"]


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers to short strings; None (JSON NaN) to an em dash; bools to yes/no."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def figure_html(fig: Any) -> str:
    """A plotly figure as a <div> (the library itself is loaded once by the page)."""
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})
