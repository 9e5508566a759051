"""HTML report rendering with plotly figures that work offline (plotly.min.js written beside the page)."""

from __future__ import annotations

from abharness.report.html import Html, Page, figure_html, kv_table, table_html, verdict_badge, write_page

__all__ = ["Html", "Page", "figure_html", "kv_table", "table_html", "verdict_badge", "write_page"]
