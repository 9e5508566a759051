"""Reusable pieces of a self-contained HTML report: sections, tables, verdict badges, plotly figures.

No CDN: ``write_page`` writes ``plotly.min.js`` next to the page (from the installed plotly package) and the
page loads it by relative path, so the report opens offline from disk. ``Page`` renders through the shared Jinja2
shell (``templates/base.html.j2``, see :mod:`abharness.report.templating`), so every page has the same look; the
section bodies given to it are markup from the helpers here.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Html", "Page", "figure_html", "table_html", "kv_table", "verdict_badge", "write_page", "esc", "fmt"]

PLOTLY_JS = "plotly.min.js"



class Html(str):
    """Trusted markup: table cells of this type are inserted as is; every other value is escaped."""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers to short strings; None (JSON NaN) to an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def verdict_badge(verdict: str) -> Html:
    return Html(f'<span class="badge {esc(verdict)}">{esc(verdict)}</span>')


def table_html(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, left: Sequence[int] = (0,)) -> str:
    """An HTML table; cells are escaped unless they are ``Html`` (trusted markup such as a verdict badge)."""

    def cell(i: int, v: Any, tag: str) -> str:
        cls = ' class="l"' if i in left else ""
        text = v if isinstance(v, Html) else esc(fmt(v))
        return f"<{tag}{cls}>{text}</{tag}>"

    head = "".join(cell(i, h, "th") for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell(i, v, "td") for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def kv_table(items: Mapping[str, Any]) -> str:
    return table_html(["", "value"], list(items.items()))


def figure_html(fig: Any) -> str:
    """A plotly figure as a <div> (the library itself is loaded once by the page)."""
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})


@dataclass
class Page:
    """An HTML page assembled from sections; ``section`` appends, ``render`` returns the document."""

    title: str
    subtitle: str = ""
    sections: list[tuple[str, str, str]] = field(default_factory=list)  # (anchor, title, body html)

    def section(self, anchor: str, title: str, body: str, *, verdict: str | None = None, headline: str = "") -> None:
        badge = f" {verdict_badge(verdict)}" if verdict else ""
        head = f'<p class="headline">{esc(headline)}</p>' if headline else ""
        self.sections.append((anchor, title, f"<h2>{esc(title)}{badge}</h2>{head}{body}"))

    def render(self) -> str:
        from abharness.report.templating import render

        return render("page.html.j2", title=self.title, subtitle=self.subtitle,
                      nav=[(a, t) for a, t, _ in self.sections], sections=self.sections)


def write_page(page: Page, out_dir: Path, filename: str = "report.html") -> Path:
    """Write the page and ``plotly.min.js`` (from the installed plotly, no network) into ``out_dir``."""
    from abharness.report.templating import plotly_js

    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / PLOTLY_JS
    if not js.is_file():
        js.write_text(plotly_js(), encoding="utf-8")
    path = out_dir / filename
    path.write_text(page.render(), encoding="utf-8")
    return path
