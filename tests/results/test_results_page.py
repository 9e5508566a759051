"""The results page and the live UI without a browser: the page shows the report's own numbers (and only those),
the SRM banner follows the report, traffic per day adds up to the report's totals, the CLI and the UI serve it."""

from __future__ import annotations

import copy
import html as html_lib
import json
import re
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from abharness.api.ui import create_ui_app, current_allocation
from abharness.cli.main import build_app
from abharness.core.events import AuditEntry
from abharness.report.results import offline_verdicts, render_results_html, write_results_html
from abharness.stores import open_store


def _text(html: str) -> str:
    return html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


def test_traffic_per_day_adds_up_to_the_report_totals(reports) -> None:
    for r in (reports.ok, reports.srm):
        assert r.traffic_bucket_s == 86_400.0  # units arrive over five days: daily buckets
        days = {b.start for b in r.traffic}
        assert 5 <= len(days) <= 6 and all(d % 86_400.0 == 0 for d in days)
        for arm in r.units:
            assert sum(b.impressions for b in r.traffic if b.arm == arm) == r.impressions[arm]
            assert sum(b.new_units for b in r.traffic if b.arm == arm) == r.units[arm]
            assert all(b.units >= b.new_units for b in r.traffic)
        assert r.to_dict()["traffic"][0].keys() == {"start", "arm", "units", "new_units", "impressions"}


def test_page_shows_decision_and_srm_banner_only_when_it_fires(reports) -> None:
    ok, srm = reports.ok.to_dict(), reports.srm.to_dict()
    assert ok["decision"] == "ship" and not ok["srm"]["alarm"]
    assert srm["decision"] == "keep-running" and srm["srm"]["alarm"]
    page_ok, page_srm = render_results_html(ok), render_results_html(srm)
    assert 'data-decision="ship"' in page_ok and 'id="srm-banner"' not in page_ok and 'id="srm-ok"' in page_ok
    assert 'data-decision="keep-running"' in page_srm and 'id="srm-banner"' in page_srm
    assert "SAMPLE RATIO MISMATCH" in page_srm and srm["srm"]["message"] in _text(page_srm)
    assert ok["reasons"][0] in _text(page_ok)
    for page in (page_ok, page_srm):
        assert "cdn" not in page.lower() and "<script src='plotly.min.js'>" in page


def test_every_section_is_drawn_and_numbers_are_the_reports(reports) -> None:
    d = reports.ok.to_dict()
    page = render_results_html(d)
    for section in ("decision", "arms", "metrics", "guardrails", "over-time", "traffic", "power", "interleaving",
                    "segments"):
        assert f'data-section="{section}"' in page, section
    # per metric + guardrails + time series + 2 traffic + power + interleaving + segments
    assert page.count('class="plotly-graph-div') == 8
    ctr = d["metrics"]["ctr"]
    text = _text(page)
    assert f"{ctr['lift']:+.3g}" in text and f"{ctr['relative_lift']:+.2%}" in text
    assert f"{d['interleaving']['preference']:+.4f}" in text
    assert "2026-" in text and str(int(d["timeseries"][0]["until"])) not in text  # dates, not unix seconds


def test_the_page_renders_the_dict_it_is_given_and_computes_nothing(reports) -> None:
    d = copy.deepcopy(reports.ok.to_dict())
    d["metrics"]["ctr"]["lift"] = d["by_treatment"]["finetuned"]["ctr"]["lift"] = 0.987654
    d["power"][0]["days_still_needed"] = 4321.0
    d["decision"], d["reasons"] = "rollback", ["a planted reason sentence"]
    text = _text(render_results_html(d))
    assert "+0.988" in text and "4321.0" in text and "a planted reason sentence" in text
    assert "ROLLBACK" not in text  # the badge text is the decision as given (CSS upper-cases it)
    assert 'data-decision="rollback"' in render_results_html(d)


def test_excluded_units_section_appears_when_the_report_carries_exclusions(reports, exclusion_summary) -> None:
    d = reports.ok.to_dict()
    assert 'data-section="exclusions"' not in render_results_html(d)
    page = render_results_html({**d, "exclusions": exclusion_summary})
    text = _text(page)
    assert 'data-section="exclusions"' in page and page.count('class="plotly-graph-div') == 9
    assert "crawler_user_agents" in text and "12 / 340 / 0" in text and "3 / 2,100 / 5" in text
    assert "1,521 → 1,506" in text and "p = 0.7400 (ok)" in text and "max_searches_per_day=200" in text
    other = _text(render_results_html({**d, "exclusions": {"bots": {"units": 7}}}))  # any other shape: a table
    assert "bots" in other and "7" in other


def test_offline_verdicts_sit_beside_the_online_one(reports) -> None:
    evaluation = {"baseline": {"name": "minilm"}, "candidate": {"name": "ft"}, "failed": False,
                  "checks": {"retrieval": {"verdict": "improved", "headline": "ndcg@10 +0.031 [0.012, 0.050]"},
                             "leakage": {"verdict": "pass", "headline": "no leaked query"}}}
    replay = {"experiment_id": "exp-ok", "impressions": 10, "qrels_queries": 30,
              "qrels": {"ndcg@10": {"delta": 0.02, "ci_low": 0.01, "ci_high": 0.03}},
              "agreement": [{"offline_source": "qrels", "offline_metric": "ndcg@10", "online_metric": "ctr",
                             "offline_delta": 0.02, "online_delta": 0.04, "verdict": "agree"}]}
    cards = offline_verdicts(evaluation=evaluation, replay=replay)
    assert [c["verdict"] for c in cards] == ["improved", "agree"]
    page = render_results_html(reports.ok.to_dict(), offline=cards)
    assert 'data-section="offline"' in page and 'data-source="online"' in page
    assert "ndcg@10 +0.031 [0.012, 0.050]" in page and "qrels nDCG@10 delta +0.0200 [+0.0100, +0.0300]" in page


def test_cli_analyze_writes_the_page_and_keeps_its_exit_code(stores, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "page"
    replay_json = tmp_path / "replay.json"
    replay_json.write_text(json.dumps({"experiment_id": "exp-srm", "agreement": []}))
    res = runner.invoke(build_app(), ["analyze", "--store", stores.srm, "--experiment", "exp-srm", "--json",
                                      "--bootstrap", "0", "--html", str(out), "--replay", str(tmp_path)])
    assert res.exit_code == 10, res.output
    payload = json.loads(res.stdout)
    page = (out / "index.html").read_text(encoding="utf-8")
    assert (out / "plotly.min.js").stat().st_size > 1_000_000
    assert 'id="srm-banner"' in page and payload["srm"]["message"] in _text(page)
    assert 'data-source="replay of exp-srm"' in page
    bad = runner.invoke(build_app(), ["analyze", "--store", stores.srm, "--experiment", "exp-srm", "--replay",
                                      str(tmp_path / "missing.json"), "--html", str(out)])
    assert bad.exit_code == 2 and "missing.json" in bad.output and "Traceback" not in bad.output
    no_html = runner.invoke(build_app(), ["analyze", "--store", stores.srm, "--experiment", "exp-srm",
                                          "--replay", str(replay_json)])
    assert no_html.exit_code == 2 and "--html" in no_html.output


def test_write_inline_makes_one_file(reports, tmp_path: Path) -> None:
    path = write_results_html(reports.ok.to_dict(), tmp_path, inline_js=True)
    assert not (tmp_path / "plotly.min.js").exists()
    assert path.stat().st_size > 1_000_000 and "<script src=" not in path.read_text(encoding="utf-8")


def test_current_allocation_folds_the_audit_log() -> None:
    e = [AuditEntry(1.0, "x", "serve", "serve_start", {"effective_weights": {"a": 1, "b": 1}}),
         AuditEntry(2.0, "x", "alice", "pause", {}),
         AuditEntry(3.0, "x", "alice", "allocation", {"weights": {"a": 0.8, "b": 0.2}}),
         AuditEntry(4.0, "x", "alice", "kill", {"reason": "oops"})]
    assert current_allocation(e[:1]) == {"weights": {"a": 0.5, "b": 0.5}, "action": "serve_start", "ts": 1.0,
                                         "paused": False, "killed": False}
    got = current_allocation(e)
    assert got["weights"] == {"a": 0.8, "b": 0.2} and got["paused"] and got["killed"] and got["ts"] == 3.0
    assert current_allocation([]) is None


@pytest.mark.anyio
async def test_ui_serves_pages_read_only_and_reuses_the_analysis(stores) -> None:
    from abharness.analysis import AnalysisOptions, analyze

    calls: list[str] = []
    store = open_store(stores.ok, migrate=False)
    now = [1_000.0]

    def run(st, exp):
        calls.append(exp)
        return analyze(st, exp, options=AnalysisOptions(bootstrap_samples=0, timeseries_points=4))

    app = create_ui_app(store, analyze=run, refresh_s=30, clock=lambda: now[0])
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ui.test") as c:
            index = await c.get("/")
            assert index.status_code == 200 and 'href="/experiments/exp-ok"' in index.text
            page = await c.get("/experiments/exp-ok")
            assert page.status_code == 200 and 'data-decision="ship"' in page.text
            assert '<meta http-equiv="refresh" content="30">' in page.text
            assert "<script src='/plotly.min.js'>" in page.text and 'data-section="live"' in page.text
            assert "baseline 50%, finetuned 50%" in _text(page.text) and "allocation" in page.text
            assert "alice" in page.text and "pause" in page.text  # the audit log
            body = (await c.get("/experiments/exp-ok.json")).json()
            assert body["decision"] == "ship" and calls == ["exp-ok"]  # the page's analysis was reused
            now[0] += 31
            await c.get("/experiments/exp-ok.json")
            assert calls == ["exp-ok", "exp-ok"]  # and redone after refresh_s
            js = await c.get("/plotly.min.js")
            assert js.status_code == 200 and len(js.content) > 1_000_000
            assert (await c.get("/experiments/nope")).status_code == 404
            assert (await c.get("/experiments/nope.json")).status_code == 404
            for method in ("POST", "PUT", "DELETE"):
                r = await c.request(method, "/experiments/exp-ok")
                assert r.status_code == 405, method
    finally:
        store.close()


@pytest.mark.parametrize("args, message", [
    (["--refresh", "0"], "--refresh"),
    (["--store", "sqlite:///nowhere/x.db"], "no SQLite file"),
])
def test_ui_bad_input_is_one_line(stores, args: list[str], message: str) -> None:
    base = ["ui", "--store", stores.ok]
    res = CliRunner().invoke(build_app(), base + args)
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output


def test_traffic_is_what_was_logged_even_when_exclusion_rules_drop_units(stores) -> None:
    from abharness.analysis import AnalysisOptions, analyze
    from abharness.analysis.exclusions import ExclusionRules

    st = open_store(stores.ok, migrate=False)
    try:
        r = analyze(st, "exp-ok", options=AnalysisOptions(bootstrap_samples=0, timeseries_points=0,
                                                          exclusions=ExclusionRules(max_searches_per_day=3)))
    finally:
        st.close()
    assert r.exclusions is not None and sum(r.exclusions.units_after.values()) < sum(r.exclusions.units_before.values())
    for arm, before in r.exclusions.units_before.items():
        assert sum(b.new_units for b in r.traffic if b.arm == arm) == before
    assert "before the exclusion rules" in render_results_html(r.to_dict())


def test_lift_over_time_ends_at_the_filtered_lift_when_units_are_excluded(stores) -> None:
    from abharness.analysis import AnalysisOptions, analyze
    from abharness.analysis.exclusions import ExclusionRules

    st = open_store(stores.ok, migrate=False)
    try:
        r = analyze(st, "exp-ok", options=AnalysisOptions(bootstrap_samples=0, timeseries_points=4, cuped=False,
                                                          exclusions=ExclusionRules(max_searches_per_day=3)))
    finally:
        st.close()
    last = r.timeseries[-1]
    assert last.units == sum(r.units.values())
    assert last.lift == pytest.approx(r.metrics["ctr"].lift, rel=1e-12)


@pytest.mark.timeout(180)
def test_ui_command_is_a_real_loopback_process_that_stops_on_sigterm(stores, tmp_path: Path) -> None:
    """`abharness ui` as a person runs it: binds 127.0.0.1 (port from --port-file), serves the pages, and stops
    on SIGTERM."""
    import os
    import signal
    import subprocess
    import sys
    import time

    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from abharness.cli.main import main; main(sys.argv[1:])", "ui",
         "--store", stores.srm, "--port", "0", "--port-file", str(port_file), "--refresh", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"},
    )
    try:
        deadline = time.monotonic() + 60
        while not port_file.is_file() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert port_file.is_file(), f"no port file; exit {proc.poll()}"
        base = f"http://127.0.0.1:{port_file.read_text().strip()}"
        page = None
        while time.monotonic() < deadline:
            try:
                page = httpx.get(f"{base}/experiments/exp-srm", timeout=30)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert page is not None and page.status_code == 200
        assert 'id="srm-banner"' in page.text and 'data-decision="keep-running"' in page.text
        assert httpx.post(f"{base}/experiments/exp-srm", timeout=10).status_code == 405
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        # uvicorn shuts down gracefully, then re-raises the captured signal
        assert proc.returncode in (0, -signal.SIGTERM), err
        assert "Traceback" not in err
        assert "listening on http://127.0.0.1:" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
