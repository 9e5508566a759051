"""Reusable pieces of a self-contained HTML report: sections, tables, verdict badges, plotly figures.

No CDN: ``write_page`` writes ``plotly.min.js`` next to the page (from the installed plotly package) and the
page loads it by relative path, so the report opens offline from disk. Pure string building otherwise; the
demo and the evaluation report both use these helpers.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Html", "Page", "figure_html", "table_html", "kv_table", "verdict_badge", "write_page", "esc", "fmt"]

PLOTLY_JS = "plotly.min.js"

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1b1f24;background:#f6f8fa}
header{background:#24292f;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#c9d1d9;font-size:13px}
main{max-width:1200px;margin:0 auto;padding:16px 32px}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;margin:16px 0;padding:16px 20px}
section h2{margin:0 0 8px;font-size:18px}p.headline{margin:4px 0 12px;color:#57606a}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border-bottom:1px solid #eaeef2;padding:4px 10px;
text-align:right}th{background:#f6f8fa}td.l,th.l{text-align:left}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:600;color:#fff}
.improved,.pass{background:#1a7f37}.regressed,.fail{background:#cf222e}.warn,.mixed{background:#bf8700}
.no-change,.info,.skipped{background:#6e7781}nav a{margin-right:12px;font-size:13px}
.note{font-size:12px;color:#57606a}
"""


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
        nav = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t, _ in self.sections)
        body = "".join(f'<section id="{esc(a)}" data-section="{esc(a)}">{b}</section>' for a, _, b in self.sections)
        return (
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{esc(self.title)}</title><style>{_CSS}</style>"
            f"<script src='{PLOTLY_JS}'></script></head><body>"
            f"<header><h1>{esc(self.title)}</h1><p>{esc(self.subtitle)}</p></header>"
            f"<main><nav>{nav}</nav>{body}</main></body></html>"
        )


def write_page(page: Page, out_dir: Path, filename: str = "report.html") -> Path:
    """Write the page and ``plotly.min.js`` (from the installed plotly, no network) into ``out_dir``."""
    from plotly.offline import get_plotlyjs

    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / PLOTLY_JS
    if not js.is_file():
        js.write_text(get_plotlyjs(), encoding="utf-8")
    path = out_dir / filename
    path.write_text(page.render(), encoding="utf-8")
    return path
