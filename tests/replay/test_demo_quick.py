"""The quick demo runs end to end on a tiny SciFact slice (fine-tune, indexes, evaluation, proxy, replay, report)."""

from __future__ import annotations

import json

import pytest

from abharness.demo import DemoOptions, run_demo


@pytest.mark.slow
@pytest.mark.model
def test_quick_demo_end_to_end(shared_data, tmp_path) -> None:
    out = tmp_path / "demo"
    summary = run_demo(DemoOptions.quick_defaults(shared_data, out))
    assert [s["name"] for s in summary["stages"]][0] == "data" and len(summary["stages"]) == 9
    assert set(summary["rows"]) == {"offline", "replay", "ab", "interleaving"}
    for row in summary["rows"].values():
        assert row["verdict"] and row["evidence"] and row["traffic"]
    sim = summary["simulation"]
    assert sim["ab"]["searches"] >= 300 and sim["ab"]["search_errors"] == {} and sim["ab"]["click_errors"] == {}
    assert sim["ab"]["units_seeing_more_than_one_arm"] == 0
    assert sim["interleaving"]["impressions_by_arm"] == {"interleaved": sim["interleaving"]["searches"]}
    s = summary["sensitivity"]
    assert s["ab_impressions_needed"] > 0 and s["interleaving_impressions_needed"] > 0
    assert s["ratio"] == pytest.approx(s["ab_impressions_needed"] / s["interleaving_impressions_needed"])
    index = (out / "index.html").read_text(encoding="utf-8")
    for link in ("evaluation/report.html", "replay/replay.html", "analysis-ab.json", "analysis-interleave.json",
                 "ab/index.html", "interleave/index.html"):
        assert link in index and (out / link).is_file(), link
    written = json.loads((out / "summary.json").read_text())
    assert written["agreement"] == summary["agreement"] and written["stages"] == summary["stages"]  # all nine
    assert set(written["rows"]["ab"]) == {"direction", "verdict", "evidence", "traffic", "impressions",
                                          "needed_for_80pct_power"}
    # the replay of the logged A/B reproduced every served list (same models and indexes)
    replay = json.loads((out / "replay" / "replay.json").read_text())
    assert replay["identical_lists"] == {"baseline": 1.0, "finetuned": 1.0}
    # a second run reuses the model, indexes and evaluation
    again = run_demo(DemoOptions.quick_defaults(shared_data, out))
    reused = {s["name"]: s["reused"] for s in again["stages"]}
    assert reused["fine-tune the candidate"] and reused["offline evaluation"]
    assert reused["build both indexes; export the fast (ONNX) query encoders"]
    # both arms were served by ONNX exports that passed the agreement gate
    assert all(note.startswith("ONNX") for note in summary["encoders"].values())
