"""Properties of team-draft interleaving (Radlinski et al. 2008) and the impression tokens."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abharness.core.interleaving import team_draft
from abharness.core.tokens import ImpressionClaims, InvalidToken, check_click, sign, verify

docs = st.sampled_from([f"d{i}" for i in range(30)])
ranking = st.lists(docs, min_size=0, max_size=15, unique=True)


@settings(max_examples=300, deadline=None)
@given(ranking, ranking, st.integers(min_value=1, max_value=20), st.integers(min_value=0, max_value=2**32))
def test_team_draft_invariants(a, b, k, seed):
    out = team_draft({"A": a, "B": b}, k, random.Random(seed))
    ids = [d for d, _ in out]
    assert len(out) <= k
    assert len(ids) == len(set(ids)), "no duplicates"
    for d, team in out:
        assert d in {"A": a, "B": b}[team], "every result comes from its team's ranking"
    na = sum(t == "A" for _, t in out)
    nb = sum(t == "B" for _, t in out)
    assert abs(na - nb) <= 1, "team balance"
    # Each team's picks appear in the order of its own ranking (it always takes its best remaining doc).
    for team, r in (("A", a), ("B", b)):
        picked = [d for d, t in out if t == team]
        assert picked == sorted(picked, key=r.index)
    # Full length whenever both rankings have at least k docs (neither can run out first).
    if len(a) >= k and len(b) >= k:
        assert len(out) == k


@settings(max_examples=200, deadline=None)
@given(ranking, ranking, st.integers(min_value=1, max_value=15), st.integers(min_value=0, max_value=2**32))
def test_team_draft_prefix_property(a, b, k, seed):
    full = team_draft({"A": a, "B": b}, k, random.Random(seed))
    for j in range(1, k + 1):
        assert team_draft({"A": a, "B": b}, j, random.Random(seed)) == full[:j]


@settings(max_examples=100, deadline=None)
@given(ranking, st.integers(min_value=1, max_value=15), st.integers(min_value=0, max_value=2**32))
def test_identical_rankings_show_that_ranking(a, k, seed):
    out = team_draft({"A": a, "B": a}, k, random.Random(seed))
    assert [d for d, _ in out] == a[:k]


def test_first_pick_is_a_fair_coin():
    firsts = [team_draft({"A": ["a1", "a2"], "B": ["b1", "b2"]}, 2, random.Random(s))[0][1] for s in range(4000)]
    share = firsts.count("A") / len(firsts)
    assert 0.45 < share < 0.55  # 4000 fair coins: sd 0.0079, this is a >6-sigma band


def test_paper_example_shape():
    a = ["d1", "d2", "d3", "d4"]
    b = ["d2", "d5", "d1", "d6"]
    out = team_draft({"A": a, "B": b}, 4, random.Random(0))
    assert sorted(t for _, t in out) == ["A", "A", "B", "B"]
    assert {d for d, _ in out} <= set(a) | set(b)


def test_team_draft_rejects_bad_input():
    with pytest.raises(ValueError, match="at least two"):
        team_draft({"A": ["x"]}, 3, random.Random(0))
    with pytest.raises(ValueError, match="k is 0"):
        team_draft({"A": ["x"], "B": ["y"]}, 0, random.Random(0))


def _claims(**kw):
    base = dict(
        impression_id="imp1", experiment_id="exp", unit_id="u1", arm="interleaved", mode="interleave",
        issued_at=100.0, expires_at=200.0, doc_ids=("d1", "d2", "d3"), teams=("A", "B", "A"),
    )
    base.update(kw)
    return ImpressionClaims(**base)


def test_token_round_trip_and_click_check():
    tok = sign(_claims(), b"k" * 32)
    claims = verify(tok, b"k" * 32, now=150.0, experiment_id="exp")
    assert claims == _claims()
    assert check_click(claims, "d2", 2) == "B"


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), "forged"),
        (lambda t: "x" + t, "forged"),
        (lambda t: "garbage", "forged"),
        (lambda t: t.split(".")[0] + ".", "forged"),
    ],
)
def test_forged_tokens_are_rejected(mutate, reason):
    tok = sign(_claims(), b"k" * 32)
    with pytest.raises(InvalidToken) as err:
        verify(mutate(tok), b"k" * 32, now=150.0)
    assert err.value.reason == reason


def test_token_signed_with_another_key_expired_or_other_experiment():
    tok = sign(_claims(), b"k" * 32)
    with pytest.raises(InvalidToken) as err:
        verify(tok, b"z" * 32, now=150.0)
    assert err.value.reason == "forged"
    with pytest.raises(InvalidToken) as err:
        verify(tok, b"k" * 32, now=200.0)
    assert err.value.reason == "expired"
    with pytest.raises(InvalidToken) as err:
        verify(tok, b"k" * 32, now=150.0, experiment_id="other")
    assert err.value.reason == "mismatch"


def test_click_on_unknown_doc_or_wrong_position():
    claims = _claims()
    with pytest.raises(InvalidToken) as err:
        check_click(claims, "d9", 1)
    assert err.value.reason == "unknown_doc"
    with pytest.raises(InvalidToken) as err:
        check_click(claims, "d1", 3)
    assert err.value.reason == "mismatch"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=10, unique=True),
    st.text(min_size=1, max_size=20),
    st.integers(min_value=0),
    st.data(),
)
def test_token_round_trips_and_any_tampering_is_forged(doc_ids, unit, seed, data):
    claims = _claims(unit_id=unit, doc_ids=tuple(doc_ids), teams=tuple("A" for _ in doc_ids))
    tok = sign(claims, b"k" * 32)
    assert verify(tok, b"k" * 32, now=150.0) == claims
    i = data.draw(st.integers(min_value=0, max_value=len(tok) - 1))
    replacement = data.draw(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."))
    tampered = tok[:i] + replacement + tok[i + 1:]
    if tampered != tok:
        with pytest.raises(InvalidToken) as err:
            verify(tampered, b"k" * 32, now=150.0)
        assert err.value.reason == "forged"
