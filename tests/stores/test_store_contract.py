"""The EventStore contract. Every test here runs unchanged against SQLite and PostgreSQL (``store`` fixture).

Aggregates are checked against a pure-Python reference computed from the same events, written from the
``UnitAggregate`` / ``InterleaveUnitAggregate`` docstrings.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence

import pytest

from abharness.core.events import AuditEntry, Click, Impression, InterleaveUnitAggregate, ShownResult, UnitAggregate
from abharness.core.interleaving import credit_impression
from abharness.errors import StoreError
from abharness.stores import open_store
from abharness.stores.base import EventStore
from abharness.stores.schema import LATEST_VERSION

EXP = "exp-1"


# -- event generation ----------------------------------------------------------------------------------------


def make_impression(i: int, *, unit: str, arm: str, ts: float, mode: str = "ab", k: int = 5, **kw) -> Impression:
    teams = kw.pop("teams", None)
    results = tuple(
        ShownResult(doc_id=f"d{i}-{p}", position=p, score=1.0 / p, team=(teams[p - 1] if teams else None))
        for p in range(1, k + 1)
    )
    return Impression(
        impression_id=f"imp-{i}",
        experiment_id=kw.pop("experiment_id", EXP),
        ts=ts,
        unit_id=unit,
        arm=arm,
        mode=mode,  # type: ignore[arg-type]
        query=f"query {i}",
        k=k,
        results=results,
        **kw,
    )


def click_on(imp: Impression, position: int, ts: float, team: str | None = None) -> Click:
    return Click(
        impression_id=imp.impression_id,
        experiment_id=imp.experiment_id,
        unit_id=imp.unit_id,
        arm=imp.arm,
        ts=ts,
        doc_id=f"{imp.impression_id.replace('imp-', 'd')}-{position}",
        position=position,
        team=team,
    )


def random_ab_events(seed: int, n: int = 400) -> tuple[list[Impression], list[Click]]:
    """Impressions over 20 units, 2 arms and 3 modes; 0-3 clicks each at random positions (some beyond k)."""
    rng = random.Random(seed)
    imps, clicks = [], []
    for i in range(n):
        k = rng.choice([3, 5, 10])
        imp = make_impression(
            i,
            unit=f"u{rng.randrange(20)}",
            arm=rng.choice(["baseline", "finetuned"]),
            ts=1_000.0 + i * 0.5,
            mode=rng.choice(["ab", "ab", "ab", "shadow"]),
            k=k,
            latency_ms=rng.uniform(1, 50),
            fallback=rng.random() < 0.1,
            error="timeout" if rng.random() < 0.05 else None,
            context=rng.choice([{"device": "mobile"}, {"device": "desktop", "locale": "fr"}, {}]),
        )
        imps.append(imp)
        positions = rng.sample(range(1, k + 3), rng.choice([0, 0, 1, 1, 2, 3]))
        base = imp.ts + rng.uniform(0.1, 5)
        for j, pos in enumerate(positions):
            # Clicks 1 and 2 share a timestamp sometimes: the first click is then the higher one (lower position).
            clicks.append(click_on(imp, pos, base + (0 if j < 2 and i % 7 == 0 else j)))
    # Events of another experiment must never leak in.
    other = make_impression(10_000, unit="u1", arm="baseline", ts=1_010.0, experiment_id="other")
    imps.append(other)
    clicks.append(click_on(other, 1, 1_011.0))
    return imps, clicks


# -- the pure-Python reference -------------------------------------------------------------------------------


def reference_unit_aggregates(
    imps: Iterable[Impression],
    clicks: Iterable[Click],
    experiment_id: str,
    *,
    since: float | None = None,
    until: float | None = None,
    segment: str | None = None,
    modes: Sequence[str] = ("ab",),
) -> dict[tuple[str, str, str | None], UnitAggregate]:
    by_imp: dict[str, list[Click]] = defaultdict(list)
    for c in clicks:
        by_imp[c.impression_id].append(c)
    acc: dict[tuple[str, str, str | None], dict[str, float]] = {}
    for imp in imps:
        if imp.experiment_id != experiment_id or imp.mode not in modes:
            continue
        if (since is not None and imp.ts < since) or (until is not None and imp.ts >= until):
            continue
        seg = None
        if segment is not None and imp.context.get(segment) is not None:
            seg = str(imp.context[segment])
        a = acc.setdefault(
            (imp.unit_id, imp.arm, seg),
            defaultdict(float, first_ts=float("inf")),
        )
        a["impressions"] += 1
        a["sum_latency_ms"] += imp.latency_ms
        a["sum_latency_ms_sq"] += imp.latency_ms**2
        a["errors"] += imp.error is not None
        a["fallbacks"] += imp.fallback
        a["first_ts"] = min(a["first_ts"], imp.ts)
        cs = by_imp.get(imp.impression_id, [])
        a["clicks"] += len(cs)
        if cs:
            first = min(cs, key=lambda c: (c.ts, c.position))
            a["clicked_impressions"] += 1
            a["sum_time_to_first_click"] += first.ts - imp.ts
            a["sum_reciprocal_rank"] += 1.0 / first.position if first.position <= imp.k else 0.0
            a["successes"] += any(c.position <= imp.k for c in cs)
    out = {}
    for (unit, arm, seg), a in acc.items():
        out[(unit, arm, seg)] = UnitAggregate(
            unit_id=unit,
            arm=arm,
            segment=seg,
            impressions=int(a["impressions"]),
            clicks=int(a["clicks"]),
            sum_reciprocal_rank=a["sum_reciprocal_rank"],
            successes=int(a["successes"]),
            sum_time_to_first_click=a["sum_time_to_first_click"],
            clicked_impressions=int(a["clicked_impressions"]),
            sum_latency_ms=a["sum_latency_ms"],
            sum_latency_ms_sq=a["sum_latency_ms_sq"],
            errors=int(a["errors"]),
            fallbacks=int(a["fallbacks"]),
            first_ts=a["first_ts"],
        )
    return out


def reference_interleave(
    imps: Iterable[Impression], clicks: Iterable[Click], experiment_id: str
) -> dict[str, InterleaveUnitAggregate]:
    by_imp: dict[str, list[Click]] = defaultdict(list)
    for c in clicks:
        by_imp[c.impression_id].append(c)
    acc: dict[str, dict] = {}
    for imp in imps:
        if imp.experiment_id != experiment_id or imp.mode != "interleave":
            continue
        a = acc.setdefault(imp.unit_id, {"impressions": 0, "wins": {}, "ties": 0, "no_click": 0})
        a["impressions"] += 1
        credit = credit_impression(c.team for c in by_imp.get(imp.impression_id, []))  # the core's one rule
        if credit.outcome == "no_click":
            a["no_click"] += 1
        elif credit.outcome == "tie":
            a["ties"] += 1
        else:
            a["wins"][credit.team] = a["wins"].get(credit.team, 0) + 1
    return {u: InterleaveUnitAggregate(unit_id=u, **a) for u, a in acc.items()}


def assert_aggregates_equal(got: Iterable[UnitAggregate], want: dict) -> None:
    got_map = {(a.unit_id, a.arm, a.segment): a for a in got}
    assert set(got_map) == set(want)
    for key, w in want.items():
        g = got_map[key]
        for name in ("impressions", "clicks", "successes", "clicked_impressions", "errors", "fallbacks"):
            assert getattr(g, name) == getattr(w, name), (key, name)
        for name in ("sum_reciprocal_rank", "sum_time_to_first_click", "sum_latency_ms", "sum_latency_ms_sq", "first_ts"):
            assert getattr(g, name) == pytest.approx(getattr(w, name), rel=1e-9, abs=1e-9), (key, name)


# -- tests ---------------------------------------------------------------------------------------------------


def test_store_reports_latest_schema_and_pings(store: EventStore) -> None:
    store.ping()
    assert store.schema_version() == LATEST_VERSION
    store.migrate()  # idempotent
    assert store.schema_version() == LATEST_VERSION
    assert store.counts() == {"impressions": 0, "clicks": 0, "audit": 0}


def test_write_and_read_back_every_field(store: EventStore) -> None:
    imp = Impression(
        impression_id="imp-full",
        experiment_id=EXP,
        ts=1_700_000_000.123456,
        unit_id="user-ü",
        arm="interleaved",
        mode="interleave",
        query="what causes \"scurvy\"? 100% vitamin C",
        k=3,
        results=(
            ShownResult("doc-a", 1, 0.91234567890123, "baseline"),
            ShownResult("doc-b", 2, -0.5, "finetuned"),
            ShownResult("doc-c", 3, 1e-12, "baseline"),
        ),
        fingerprints={"baseline": {"model": "abc", "index": "def"}, "finetuned": {"model": "123", "index": "456"}},
        latency_ms=12.75,
        fallback=True,
        error="treatment timeout after 200 ms",
        shadow_results=(ShownResult("doc-z", 1, 0.3, "finetuned"),),
        context={"device": "mobile", "nested": {"a": [1, 2]}, "n": 3},
    )
    click = Click("imp-full", EXP, "user-ü", "interleaved", 1_700_000_003.5, "doc-b", 2, "finetuned", 1234.5)
    result = store.write_batch([imp, click])
    assert (result.stored, result.duplicates) == (2, 0)
    assert store.get_impression("imp-full") == imp
    assert store.get_impression("nope") is None
    [(got_imp, got_clicks)] = list(store.iter_impressions(EXP))
    assert got_imp == imp and got_clicks == [click]
    assert store.experiments() == [EXP]
    assert store.arms(EXP) == ["interleaved"]
    assert store.counts(EXP) == {"impressions": 1, "clicks": 1, "audit": 0}
    assert store.counts("other") == {"impressions": 0, "clicks": 0, "audit": 0}


def test_duplicates_are_ignored_and_counted(store: EventStore) -> None:
    imp = make_impression(1, unit="u", arm="baseline", ts=10.0)
    c1, c2 = click_on(imp, 1, 11.0), click_on(imp, 2, 12.0)
    first = store.write_batch([imp, c1, c1])  # a duplicate inside one batch
    assert (first.stored, first.duplicates) == (2, 1)
    again = store.write_batch([imp, c1, c2])  # a retried batch plus one new click
    assert (again.stored, again.duplicates) == (1, 2)
    # A second click on the same (impression, doc) with another timestamp is still the same click.
    late = click_on(imp, 1, 99.0)
    assert store.write_batch([late]).duplicates == 1
    assert store.counts() == {"impressions": 1, "clicks": 2, "audit": 0}
    [(_, clicks)] = list(store.iter_impressions(EXP))
    assert [c.ts for c in clicks] == [11.0, 12.0]


def test_a_failing_batch_stores_nothing(store: EventStore) -> None:
    good = make_impression(1, unit="u", arm="baseline", ts=10.0)
    bad = make_impression(2, unit=None, arm="baseline", ts=11.0)  # type: ignore[arg-type]  # NOT NULL violated
    with pytest.raises(StoreError):
        store.write_batch([good, bad])
    assert store.counts() == {"impressions": 0, "clicks": 0, "audit": 0}
    assert store.write_batch([good]).stored == 1


def test_unit_aggregates_match_the_reference(store: EventStore) -> None:
    imps, clicks = random_ab_events(seed=7)
    # Clicks first, as a second replica may write them before the impression's replica does.
    store.write_batch(clicks[:150])
    for i in range(0, len(imps), 64):
        store.write_batch(imps[i : i + 64])
    store.write_batch(clicks[150:])
    cases = [
        {},
        {"since": 1_040.0, "until": 1_120.0},
        {"segment": "device"},
        {"segment": "locale", "modes": ("ab", "shadow")},
        {"modes": ("shadow",)},
    ]
    for kw in cases:
        want = reference_unit_aggregates(imps, clicks, EXP, **kw)
        assert want, kw
        got = list(store.unit_aggregates(EXP, **kw))
        assert_aggregates_equal(got, want)
    assert list(store.unit_aggregates(EXP, since=5_000.0)) == []
    assert list(store.unit_aggregates("no-such-experiment")) == []


def test_traffic_counts_match_the_reference(store: EventStore) -> None:
    """Units (distinct) and impressions per arm per time bucket, against a count over the same events."""
    imps, clicks = random_ab_events(seed=11)
    store.write_batch(imps)
    for kw in ({"bucket_s": 20.0}, {"bucket_s": 50.0, "since": 1_040.0, "until": 1_120.0},
               {"bucket_s": 30.0, "modes": ("ab", "shadow")}):
        bucket, modes = kw["bucket_s"], kw.get("modes", ("ab",))
        lo, hi = kw.get("since", float("-inf")), kw.get("until", float("inf"))
        units: dict[tuple[float, str], set[str]] = defaultdict(set)
        n: dict[tuple[float, str], int] = defaultdict(int)
        for i in imps:
            if i.experiment_id == EXP and i.mode in modes and lo <= i.ts < hi:
                key = ((i.ts // bucket) * bucket, i.arm)
                units[key].add(i.unit_id)
                n[key] += 1
        want = [(b, a, len(units[(b, a)]), n[(b, a)]) for b, a in sorted(n)]
        assert want, kw
        assert store.traffic_counts(EXP, **kw) == want
    assert store.traffic_counts("no-such-experiment") == []


def test_first_click_rank_and_success_follow_the_definition(store: EventStore) -> None:
    """Hand-worked case: the first click (by time) sets the reciprocal rank; a later top-k click still succeeds."""
    a = make_impression(1, unit="u", arm="baseline", ts=100.0, k=3, latency_ms=10.0)
    b = make_impression(2, unit="u", arm="baseline", ts=200.0, k=3, latency_ms=20.0, error="boom")
    c = make_impression(3, unit="u", arm="baseline", ts=300.0, k=3, latency_ms=30.0, fallback=True)
    events = [
        a,
        b,
        c,
        click_on(a, 2, 104.0),  # first click on a: rank 2 -> 1/2
        click_on(a, 1, 109.0),
        click_on(b, 5, 201.0),  # first click on b beyond k: rank 0; later click at 3 is in the top k
        click_on(b, 3, 202.0),
    ]
    store.write_batch(events)
    [agg] = list(store.unit_aggregates(EXP))
    assert (agg.impressions, agg.clicks, agg.clicked_impressions, agg.successes) == (3, 4, 2, 2)
    assert agg.sum_reciprocal_rank == pytest.approx(0.5)
    assert agg.sum_time_to_first_click == pytest.approx(4.0 + 1.0)
    assert agg.sum_latency_ms == pytest.approx(60.0)
    assert agg.sum_latency_ms_sq == pytest.approx(100.0 + 400.0 + 900.0)
    assert (agg.errors, agg.fallbacks, agg.first_ts) == (1, 1, 100.0)


def test_interleave_aggregates_match_the_reference(store: EventStore) -> None:
    rng = random.Random(11)
    imps, clicks = [], []
    for i in range(300):
        teams = [rng.choice(["baseline", "finetuned"]) for _ in range(5)]
        imp = make_impression(
            i, unit=f"u{rng.randrange(15)}", arm="interleaved", ts=50.0 + i, mode="interleave", k=5, teams=teams
        )
        imps.append(imp)
        for pos in rng.sample(range(1, 6), rng.choice([0, 0, 1, 2, 3])):
            clicks.append(click_on(imp, pos, imp.ts + pos, team=teams[pos - 1]))
    # A click without a team tag is credited to nobody; ab impressions are not interleaving outcomes.
    untagged = make_impression(999, unit="u0", arm="interleaved", ts=400.0, mode="interleave", k=5)
    ab = make_impression(1000, unit="u0", arm="baseline", ts=401.0)
    imps += [untagged, ab]
    clicks += [click_on(untagged, 1, 402.0), click_on(ab, 1, 402.0)]
    store.write_batch(imps + clicks)
    want = reference_interleave(imps, clicks, EXP)
    got = {a.unit_id: a for a in store.interleave_aggregates(EXP)}
    assert got == want
    assert sum(a.ties for a in got.values()) > 0 and sum(a.no_click for a in got.values()) > 0
    windowed = {a.unit_id: a for a in store.interleave_aggregates(EXP, since=100.0, until=200.0)}
    assert sum(a.impressions for a in windowed.values()) == 100


def test_iter_impressions_pages_in_time_order(store: EventStore) -> None:
    imps = [make_impression(i, unit="u", arm="a", ts=float(i // 3)) for i in range(50)]  # ties in ts
    rng = random.Random(3)
    shuffled = imps[:]
    rng.shuffle(shuffled)
    store.write_batch(shuffled + [click_on(imps[10], 2, 99.0), click_on(imps[10], 1, 98.0)])
    got = list(store.iter_impressions(EXP, batch_size=7))
    assert [i.impression_id for i, _ in got] == [i.impression_id for i in sorted(imps, key=lambda m: (m.ts, m.impression_id))]
    clicks = dict((i.impression_id, c) for i, c in got)["imp-10"]
    assert [c.position for c in clicks] == [1, 2]
    window = list(store.iter_impressions(EXP, since=3.0, until=5.0, batch_size=2))
    assert sorted(i.ts for i, _ in window) == [3.0] * 3 + [4.0] * 3


def test_audit_log_keeps_actions_in_order_once(store: EventStore) -> None:
    entries = [
        AuditEntry(ts=5.0, experiment_id=EXP, actor="alice", action="set_weights", payload={"finetuned": 0.1}),
        AuditEntry(ts=6.0, experiment_id=EXP, actor="bob", action="pause", payload={}),
        AuditEntry(ts=7.0, experiment_id="other", actor="bob", action="kill", payload={"reason": "x"}),
    ]
    assert store.write_batch(entries).stored == 3
    assert store.write_batch(entries[:1]).duplicates == 1  # a retried batch
    assert store.audit_log(EXP) == entries[:2]
    assert store.counts(EXP)["audit"] == 2


def test_newer_schema_is_refused(store: EventStore) -> None:
    store.execute("INSERT INTO schema_migrations (version, description, applied_at) VALUES (99, 'future', 0)")
    with pytest.raises(StoreError, match="99"):
        store.migrate()


def test_migrating_an_existing_version_1_database(store_url: str) -> None:
    old = open_store(store_url, migrate=False)
    try:
        with pytest.raises(StoreError, match="schema version 0"):
            old.ping()
        old.migrate(target=1)
        assert old.schema_version() == 1
        # Rows as version 1 wrote them (no has_error column yet).
        old.execute(
            "INSERT INTO impressions (impression_id, experiment_id, ts, unit_id, arm, mode, query, k, results, "
            "fingerprints, latency_ms, fallback, error, shadow_results, context) VALUES "
            "('old-1', 'exp-1', 1.0, 'u1', 'baseline', 'ab', 'q', 2, "
            "'[{\"doc_id\":\"a\",\"position\":1,\"score\":0.5,\"team\":null}]', '{}', 4.0, 0, 'boom', NULL, "
            "'{\"device\":\"mobile\"}')"
        )
        old.execute(
            "INSERT INTO clicks (impression_id, doc_id, experiment_id, unit_id, arm, ts, position, team, dwell_ms) "
            "VALUES ('old-1', 'a', 'exp-1', 'u1', 'baseline', 3.0, 1, NULL, NULL)"
        )
    finally:
        old.close()
    upgraded = open_store(store_url)  # migrates to the latest version
    try:
        assert upgraded.schema_version() == LATEST_VERSION
        upgraded.ping()
        imp = upgraded.get_impression("old-1")
        assert imp is not None and imp.error == "boom" and imp.context == {"device": "mobile"}
        [agg] = list(upgraded.unit_aggregates(EXP))
        assert (agg.impressions, agg.clicks, agg.errors, agg.successes) == (1, 1, 1, 1)  # has_error backfilled
        assert agg.sum_time_to_first_click == pytest.approx(2.0)
        new = make_impression(5, unit="u1", arm="baseline", ts=2.0, latency_ms=6.0)
        assert upgraded.write_batch([new]).stored == 1
        [agg] = list(upgraded.unit_aggregates(EXP))
        assert (agg.impressions, agg.sum_latency_ms) == (2, pytest.approx(10.0))
        upgraded.migrate()
        assert upgraded.counts() == {"impressions": 2, "clicks": 1, "audit": 0}
    finally:
        upgraded.close()


def test_closed_store_raises_store_error(store_url: str) -> None:
    s = open_store(store_url)
    s.close()
    with pytest.raises(StoreError):
        s.counts()
