"""Contract for the issue-14 store additions, on SQLite and PostgreSQL: feedback rows (seen, dwell; a dwell fills
its click's dwell_ms) and per-unit activity (most searches on a day, fast clicks)."""

from __future__ import annotations

from abharness.core.events import Click, Feedback, Impression, ShownResult

EXP = "exp-fb"
DAY = 1_767_225_600.0


def _imp(iid: str, unit: str, ts: float) -> Impression:
    return Impression(iid, EXP, ts, unit, "a", "ab", "q", 2, (ShownResult("d1", 1, 1.0, "a"), ShownResult("d2", 2, .5, "a")))


def test_feedback_is_stored_once_and_dwell_fills_the_click(store):
    store.write_batch([_imp("i1", "u1", DAY), Click("i1", EXP, "u1", "a", DAY + 1, "d2", 2, "a")])
    fb = [Feedback("i1", EXP, "u1", "a", DAY + 0.5, "seen", "d1", 1), Feedback("i1", EXP, "u1", "a", DAY + 0.5,
                                                                                "seen", "d2", 2),
          Feedback("i1", EXP, "u1", "a", DAY + 9, "dwell", "d2", 2, 8000.0)]
    assert store.write_batch(fb).stored == 3
    assert store.write_batch(fb).duplicates == 3  # a beacon sent twice is stored once
    got = store.feedback(EXP)
    assert [(f.kind, f.doc_id, f.value) for f in got] == [("seen", "d1", None), ("seen", "d2", None),
                                                          ("dwell", "d2", 8000.0)]
    [(_, clicks)] = list(store.iter_impressions(EXP))
    assert clicks[0].dwell_ms == 8000.0
    # a later dwell never overwrites the first one
    store.write_batch([Feedback("i1", EXP, "u1", "a", DAY + 20, "dwell", "d1", 1, 5.0)])
    [(_, clicks)] = list(store.iter_impressions(EXP))
    assert clicks[0].dwell_ms == 8000.0


def test_unit_activity_counts_searches_per_day_and_fast_clicks(store):
    events = [_imp(f"b{i}", "bot", DAY + i) for i in range(30)]
    events += [_imp(f"h{i}", "human", DAY + i * 40_000) for i in range(6)]  # 6 searches over 3 days
    events += [Click(f"b{i}", EXP, "bot", "a", DAY + i + 0.05, "d1", 1, "a") for i in range(10)]
    events += [Click("h0", EXP, "human", "a", DAY + 5, "d1", 1, "a"), Click("h1", EXP, "human", "a",
                                                                             DAY + 40_000.1, "d2", 2, "a")]
    store.write_batch(events)
    rows = {r[0]: r[2:] for r in store.unit_activity(EXP, fast_click_s=0.3)}
    assert rows["bot"] == (30, 10, 10)
    assert rows["human"] == (3, 2, 1)  # at most 3 searches on one UTC day; one click came within 0.3 s
    assert store.unit_activity(EXP, since=DAY + 100_000)[0][0] == "human"
