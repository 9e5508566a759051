"""The replay page (and the results page carrying the replay's verdict) in a real headless Chromium: every plot
draws its SVG, no console error, no request off the machine; screenshots kept, paths printed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from abharness.cli.main import build_app
from abharness.replay import replay
from abharness.replay.render import write_replay_outputs
from abharness.stores import open_store
from abharness.testing.browser import browser, check_page, chromium_or_skip

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_replay_page_draws_its_plots_in_chromium(logged_ab, toy, make_backends, tmp_path: Path) -> None:
    exe = chromium_or_skip()
    shots = Path(os.environ.get("ABHARNESS_ARTIFACTS", tmp_path))
    cfg, _, _, url = logged_ab
    corpus, queries, qrels = toy
    store = open_store(url)
    try:
        report = replay(store, cfg.experiment_id, make_backends(corpus), control="baseline", treatment="finetuned",
                        qrels=qrels, query_ids={t: q for q, t in queries.items()})
    finally:
        store.close()
    paths = write_replay_outputs(report, tmp_path / "replay")
    payload = json.loads(paths["json"].read_text(encoding="utf-8"))
    page = paths["html"].read_text(encoding="utf-8")
    assert "<script src='plotly.min.js'>" in page and "cdn" not in page.lower()
    for section in ("replay-summary", "replayed", "offline", "ir", "overlap", "agreement"):
        assert f'data-section="{section}"' in page, section
    res = CliRunner().invoke(build_app(), ["analyze", "--store", url, "--experiment", cfg.experiment_id,
                                           "--bootstrap", "0", "--html", str(tmp_path / "results"),
                                           "--replay", str(tmp_path / "replay")])
    assert res.exit_code in (0, 10, 20), res.output
    with browser(exe) as b:
        check = check_page(b, paths["html"].as_uri(), shots / "replay.png")
        print(f"\nscreenshot: {check.screenshot} ({check.figures_with_svg}/{check.figures} figures drawn)")
        assert not check.problems, check.problems
        assert check.figures == 6  # replayed vs online, offline deltas, COEC, qrels, overlap, agreement
        assert f"{payload['impressions']:,} impressions" in check.text
        results = check_page(b, (tmp_path / "results" / "index.html").as_uri(), shots / "results-with-replay.png",
                             evaluate={"cards": "() => [...document.querySelectorAll('.card')].map(c => "
                                                "c.dataset.source)"})
        print(f"screenshot: {results.screenshot} ({results.figures_with_svg}/{results.figures} figures drawn)")
        assert not results.problems, results.problems
        assert results.extra["cards"] == ["online", f"replay of {cfg.experiment_id}"]
