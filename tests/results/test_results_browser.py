"""The results pages in a real headless Chromium (Debian's, driven by Playwright; never a downloaded browser):
from disk (``analyze --html``) and live from a running ``abharness ui`` server. Every plotly figure must draw its
SVG, the decision and the SRM banner must show (the banner only on the store with a planted mismatch), nothing
may log a console error or reach off the machine. A screenshot per page is kept; its path is printed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from abharness.cli.main import build_app
from abharness.core.events import AuditEntry
from abharness.report.results import offline_verdicts, write_results_html
from abharness.stores import open_store
from abharness.testing.browser import browser, check_page, chromium_or_skip

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# The banner's box on first sight, and after scrolling far down (it is sticky: it stays on screen).
_BANNER = """() => { const b = document.querySelector('#srm-banner'); if (!b) return null;
  const r = b.getBoundingClientRect(); window.scrollTo(0, 2500); const s = b.getBoundingClientRect().top;
  window.scrollTo(0, 0); return {h: r.height, w: r.width, bg: getComputedStyle(b).backgroundColor, top: r.top,
  top_scrolled: s}; }"""
_DECISION = "() => document.querySelector('#decision-badge')?.dataset.decision ?? null"
_TICKS = "() => [...document.querySelectorAll('#over-time .xtick text')].map(t => t.textContent)"


def _assert_page(check, *, decision: str, srm: bool, min_figures: int) -> None:
    print(f"\nscreenshot: {check.screenshot} ({check.url}; {check.figures_with_svg}/{check.figures} figures drawn)")
    assert not check.problems, check.problems
    assert check.figures >= min_figures and check.figures_with_svg == check.figures
    assert check.extra["decision"] == decision
    banner = check.extra["banner"]
    if srm:
        assert banner is not None and banner["h"] >= 60 and banner["w"] >= 1000 and banner["top"] < 200
        assert banner["top_scrolled"] == 0  # still in view at the top while the reader scrolls
        assert banner["bg"] == "rgb(207, 34, 46)"  # the red of the banner, not hidden or unstyled
        assert "SAMPLE RATIO MISMATCH" in check.text
    else:
        assert banner is None and "Sample ratio check passed" in check.text
    assert check.screenshot.stat().st_size > 50_000


def test_results_pages_from_disk_render_in_chromium(stores, reports, exclusion_summary, artifacts_dir: Path,
                                                    tmp_path: Path) -> None:
    exe = chromium_or_skip()
    runner = CliRunner()
    pages = {}
    for name, decision, exit_code in (("ok", "ship", 0), ("srm", "keep-running", 10)):
        out = tmp_path / name
        res = runner.invoke(build_app(), ["analyze", "--store", getattr(stores, name), "--experiment",
                                          f"exp-{name}", "--segment", "device", "--bootstrap", "0", "--html",
                                          str(out)])
        assert res.exit_code == exit_code, res.output
        pages[name] = (out / "index.html", decision)
    # every optional section at once: excluded units (bot filters) and offline verdicts beside the online one
    full = write_results_html({**reports.ok.to_dict(), "exclusions": exclusion_summary}, tmp_path / "full",
                              offline=offline_verdicts(replay={"experiment_id": "exp-ok", "agreement": []}))
    pages["full"] = (full, "ship")
    with browser(exe) as b:
        for name, (path, decision) in pages.items():
            check = check_page(b, path.as_uri(), artifacts_dir / f"results-{name}-from-disk.png",
                               evaluate={"decision": _DECISION, "banner": _BANNER, "ticks": _TICKS})
            _assert_page(check, decision=decision, srm=name == "srm", min_figures=9 if name == "full" else 7)
            ticks = " ".join(check.extra["ticks"])  # the lift-over-time axis shows dates, not unix seconds
            assert "2026" in ticks and "17800" not in ticks, ticks
        assert "Excluded units" in check.text and "replay of exp-ok" in check.text


def test_live_pages_render_and_refresh_in_chromium(stores, artifacts_dir: Path, tmp_path: Path) -> None:
    from abharness.analysis import AnalysisOptions, analyze
    from abharness.api.ui import create_ui_app
    from abharness.simulate.live import serve_in_thread

    exe = chromium_or_skip()
    options = AnalysisOptions(bootstrap_samples=0, timeseries_points=5)
    opened = {}
    for name in ("ok", "srm"):  # copies: this test writes an admin ramp into the audit log
        copy = tmp_path / f"{name}.db"
        shutil.copyfile(getattr(stores, name)[len("sqlite:///"):], copy)
        opened[name] = open_store(f"sqlite:///{copy}", migrate=False)
    try:
        with browser(exe) as b:
            for name, decision in (("ok", "ship"), ("srm", "keep-running")):
                app = create_ui_app(opened[name], analyze=lambda s, e: analyze(s, e, segment="device",
                                                                               options=options), refresh_s=2)
                with serve_in_thread(app) as url:
                    assert url.startswith("http://127.0.0.1:")
                    index = check_page(b, f"{url}/", artifacts_dir / f"live-{name}-index.png")
                    assert not index.problems and f"exp-{name}" in index.text
                    check = check_page(b, f"{url}/experiments/exp-{name}",
                                       artifacts_dir / f"results-{name}-live.png",
                                       evaluate={"decision": _DECISION, "banner": _BANNER})
                    _assert_page(check, decision=decision, srm=name == "srm", min_figures=6)
                    assert "Current allocation and audit log" in check.text and "serve_start" in check.text
                    if name == "ok":
                        _assert_the_page_reloads_with_a_new_allocation(b, url, opened[name])
    finally:
        for st in opened.values():
            st.close()


def _assert_the_page_reloads_with_a_new_allocation(b, url: str, store) -> None:
    """An admin ramp written to the audit log while the page is open shows up by itself (the page's timer)."""
    context = b.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(f"{url}/experiments/exp-ok", wait_until="load")
        assert "baseline 50%, finetuned 50%" in page.inner_text("#allocation")
        store.write_batch([AuditEntry(1_790_000_000.0, "exp-ok", "bob", "allocation",
                                      {"weights": {"baseline": 0.2, "finetuned": 0.8}})])
        page.wait_for_function("() => document.querySelector('#allocation')?.innerText.includes('finetuned 80%')",
                               timeout=20_000)
        assert "bob" in page.inner_text("#live")
    finally:
        context.close()
    assert not errors, errors
