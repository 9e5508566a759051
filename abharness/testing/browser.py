"""Open a page in a real headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright for Python; never a
downloaded browser) and check what a person would see: every plotly figure drew its SVG, no console error, no
failed request; a full-page screenshot is kept.

Use ``chromium_or_skip()`` in tests: it returns the executable or skips with the reason (no chromium binary, or
Playwright not installed). The network is cut off for anything but ``file://`` and loopback, so a page that still
reached for a CDN fails instead of silently downloading.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM_ARGS", "PageCheck", "browser", "check_page", "chromium_or_skip", "find_chromium"]

CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync")
_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def find_chromium() -> str | None:
    """Path of Debian's chromium (``ABHARNESS_CHROMIUM`` overrides), or None."""
    env = os.environ.get("ABHARNESS_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for c in _CANDIDATES:
        if Path(c).is_file():
            return c
    return shutil.which("chromium")


def chromium_or_skip() -> str:
    """The chromium executable, or ``pytest.skip`` with the reason (printed with ``-ra``)."""
    import pytest

    path = find_chromium()
    if path is None:
        pytest.skip("no chromium binary: install Debian's chromium (apt-get install -y chromium); .ci/run does")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("Playwright for Python is not installed: pip install playwright (no browser download needed)")
    return path


@dataclass
class PageCheck:
    """What the browser saw on one page."""

    url: str
    screenshot: Path
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    figures: int = 0
    figures_with_svg: int = 0
    text: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def problems(self) -> list[str]:
        """Everything that should not happen on a page, as readable lines."""
        out = [f"console error: {e}" for e in self.console_errors]
        out += [f"page error: {e}" for e in self.page_errors]
        out += [f"failed request: {e}" for e in self.failed_requests]
        if self.figures_with_svg != self.figures:
            out.append(f"{self.figures - self.figures_with_svg} of {self.figures} plotly figures drew no SVG")
        return out


@contextmanager
def browser(executable: str) -> Iterator[Any]:
    """A headless Chromium (Playwright ``Browser``), closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS), headless=True)
        try:
            yield b
        finally:
            b.close()


_LOCAL = ("file://", "http://127.0.0.1", "http://localhost", "data:", "about:")


def check_page(b: Any, url: str, screenshot: Path, *, timeout_ms: float = 30_000,
               evaluate: dict[str, str] | None = None) -> PageCheck:
    """Load ``url``, wait for every ``.plotly-graph-div`` to hold its ``svg.main-svg``, take a full-page screenshot.

    ``evaluate`` maps names to JavaScript expressions whose values land in ``PageCheck.extra``.
    """
    context = b.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    check = PageCheck(url=url, screenshot=screenshot)

    def route(r: Any) -> None:
        if r.request.url.startswith(_LOCAL):
            r.continue_()
        else:
            check.failed_requests.append(f"blocked non-local request {r.request.url}")
            r.abort()

    page.route("**/*", route)
    page.on("console", lambda m: check.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: check.page_errors.append(str(e)))
    page.on("requestfailed", lambda r: check.failed_requests.append(f"{r.url}: {r.failure}")
            if not any(r.url in f for f in check.failed_requests) else None)
    try:
        page.goto(url, wait_until="load", timeout=timeout_ms)
        check.figures = page.locator(".plotly-graph-div").count()
        if check.figures:
            page.wait_for_function(
                "() => [...document.querySelectorAll('.plotly-graph-div')].every(d => d.querySelector('svg.main-svg'))",
                timeout=timeout_ms)
        check.figures_with_svg = page.evaluate(
            "() => [...document.querySelectorAll('.plotly-graph-div')].filter(d => d.querySelector('svg.main-svg'))"
            ".length")
        check.text = page.inner_text("body")
        for name, js in (evaluate or {}).items():
            check.extra[name] = page.evaluate(js)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
    finally:
        context.close()
    return check
