"""HTML pages: one Jinja2 shell and its templates (``templating``), plotly figures that work offline
(``plotly.min.js`` written beside the page or inlined), and one module per page (``results``, ``replay``,
``evaluation``) that turns a report's JSON form into what its template shows."""

from __future__ import annotations

from abharness.report.templating import render, write_html

__all__ = ["render", "write_html"]
