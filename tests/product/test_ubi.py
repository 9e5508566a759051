"""OpenSearch UBI: export an experiment as ubi_queries / ubi_events JSON lines, import them into a fresh store, and
get the same analysis; import logs written by another UBI client."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from abharness.analysis import AnalysisOptions, analyze
from abharness.cli.main import build_app
from abharness.core.events import Feedback
from abharness.errors import DataError
from abharness.stores import open_store
from abharness.stores.ubi import import_ubi

from .test_bot_exclusions import EXP, W, plant


def _opts(**kw):
    return AnalysisOptions(control="baseline", weights=W, bootstrap_samples=50, timeseries_points=4, cuped=False,
                           **kw)


def _numbers(report) -> dict:
    d = report.to_dict()
    return {k: d[k] for k in ("units", "impressions", "srm", "metrics", "guardrails", "decision", "reasons",
                              "power", "timeseries")}


def _close(a, b, path: str = "") -> list[str]:
    """Where two reports differ: structure and non-floats exactly, floats to 1e-9 (relative, or absolute near 0).

    The rollups add each batch's sums into the stored ones, so two stores that took the same events in different
    batches can hold sums that differ in the last bits (float addition is not associative); 1e-9 is the project's
    equality for analysis numbers (docs/analysis.md).
    """
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(set(a) ^ set(b))}"]
        return [d for k in a for d in _close(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _close(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        ok = a == b or (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
        return [] if ok else [f"{path}: {a!r} != {b!r}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


@pytest.mark.slow
def test_ubi_round_trip_gives_the_same_analysis(tmp_path):
    src = open_store(f"sqlite:///{tmp_path / 'src.db'}")
    plant(src, humans=600, bots=2, seed=11)
    # some browser feedback as well: results seen and a dwell time
    imps = src.execute("SELECT impression_id, unit_id, arm, ts, results FROM impressions LIMIT 40")
    fb = []
    for iid, unit, arm, ts, results in imps:
        first = json.loads(results)[0]
        fb.append(Feedback(iid, EXP, unit, arm, ts + 1, "seen", first["doc_id"], 1))
    click = src.execute("SELECT impression_id, doc_id, position, unit_id, arm, ts FROM clicks LIMIT 1")[0]
    fb.append(Feedback(click[0], EXP, click[3], click[4], click[5] + 30, "dwell", click[1], click[2], 29_500.0))
    src.write_batch(fb)
    out = tmp_path / "ubi"
    r = CliRunner().invoke(build_app(), ["ubi", "export", "--store", src.url, "--experiment", EXP, "--out", str(out)])
    assert r.exit_code == 0, r.output
    queries = [json.loads(x) for x in (out / "ubi_queries.jsonl").read_text().splitlines()]
    events = [json.loads(x) for x in (out / "ubi_events.jsonl").read_text().splitlines()]
    q = queries[0]
    assert set(q) >= {"query_id", "client_id", "user_query", "timestamp", "query_response_hit_ids",
                      "query_attributes", "object_id_field", "application"}
    assert q["timestamp"].endswith("Z") and len(q["query_response_hit_ids"]) == 10
    e = next(x for x in events if x["action_name"] == "click")
    assert e["event_attributes"]["object"]["object_id"] in next(
        x for x in queries if x["query_id"] == e["query_id"])["query_response_hit_ids"]
    assert isinstance(e["event_attributes"]["position"]["ordinal"], int)
    actions = {x["action_name"] for x in events}
    assert actions == {"click", "impression", "dwell"}

    dst = open_store(f"sqlite:///{tmp_path / 'dst.db'}")
    r = CliRunner().invoke(build_app(), ["ubi", "import", "--store", dst.url, "--queries",
                                         str(out / "ubi_queries.jsonl"), "--events", str(out / "ubi_events.jsonl")])
    assert r.exit_code == 0, r.output
    counts = (src.counts(EXP), dst.counts(EXP), len(src.feedback(EXP)), len(dst.feedback(EXP)))
    print(f"\nUBI round trip: {len(queries)} queries, {len(events)} events; source {counts[0]} "
          f"+ {counts[2]} feedback; imported {counts[1]} + {counts[3]} feedback; cli: {r.output.strip()}")
    assert counts[0]["impressions"] == counts[1]["impressions"] == len(queries)
    assert counts[0]["clicks"] == counts[1]["clicks"] and counts[2] == counts[3] == 41
    assert [(i.impression_id, i.results, i.ts, i.context, i.k, i.fingerprints) for i, _ in src.iter_impressions(EXP)] \
        == [(i.impression_id, i.results, i.ts, i.context, i.k, i.fingerprints) for i, _ in dst.iter_impressions(EXP)]
    a, b = analyze(src, EXP, options=_opts()), analyze(dst, EXP, options=_opts())
    assert _close(_numbers(a), _numbers(b)) == []
    rules = _opts().exclusions.__class__(max_searches_per_day=200, crawler_user_agents=True)
    assert _close(_numbers(analyze(src, EXP, options=_opts(exclusions=rules))),
                  _numbers(analyze(dst, EXP, options=_opts(exclusions=rules)))) == []
    src.close()
    dst.close()


def test_import_logs_from_another_ubi_client(tmp_path):
    qs = [
        {"query_id": "q1", "client_id": "c1", "user_query": "red shoes", "timestamp": "2026-01-02T10:00:00Z",
         "query_response_hit_ids": ["p1", "p2", "p3"], "query_attributes": {"arm": "baseline"}},
        {"query_id": "q2", "client_id": "c2", "user_query": "blue hat", "timestamp": "2026-01-02T10:01:00+00:00",
         "query_response_hit_ids": ["p9", "p8"], "query_attributes": {"arm": "finetuned"}},
        {"query_id": "q3", "client_id": "c3", "user_query": "no arm", "timestamp": "2026-01-02T10:02:00Z",
         "query_response_hit_ids": ["p1"], "query_attributes": {}},
    ]
    es = [
        {"action_name": "click_through", "query_id": "q1", "client_id": "c1", "timestamp": 1767348005000,
         "event_attributes": {"object": {"object_id": "p2", "object_id_field": "sku"}}},
        {"action_name": "impression", "query_id": "q2", "client_id": "c2", "timestamp": "2026-01-02T10:01:01Z",
         "event_attributes": {"object": {"object_id": "p8"}, "position": {"ordinal": 2}}},
        {"action_name": "add_to_cart", "query_id": "q1", "client_id": "c1", "timestamp": "2026-01-02T10:00:09Z",
         "event_attributes": {"object": {"object_id": "p2"}}},
        {"action_name": "click", "query_id": "zz", "client_id": "c9", "timestamp": "2026-01-02T10:00:09Z",
         "event_attributes": {"object": {"object_id": "p2"}}},
    ]
    (tmp_path / "q.jsonl").write_text("\n".join(json.dumps(x) for x in qs) + "\n")
    (tmp_path / "e.jsonl").write_text("\n".join(json.dumps(x) for x in es) + "\n")
    store = open_store("sqlite:///:memory:")
    counts = import_ubi(store, tmp_path / "q.jsonl", tmp_path / "e.jsonl", experiment_id="shop")
    assert (counts.queries, counts.clicks, counts.seen) == (2, 1, 1)
    assert counts.skipped == {"query without query_id, client or arm": 1,
                              "action add_to_cart (not a click, impression or dwell)": 1,
                              "event for a query not in the file": 1}
    [(imp, clicks)] = [x for x in store.iter_impressions("shop") if x[0].impression_id == "q1"]
    assert imp.arm == "baseline" and [r.doc_id for r in imp.results] == ["p1", "p2", "p3"]
    assert clicks[0].position == 2 and clicks[0].ts == pytest.approx(1767348005.0)
    (tmp_path / "bad.jsonl").write_text('{"query_id": "q1"}\nnot json\n')
    with pytest.raises(DataError, match="bad.jsonl:2"):
        import_ubi(store, tmp_path / "bad.jsonl")
    store.close()
