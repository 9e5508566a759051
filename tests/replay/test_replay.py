"""Replay on a small logged experiment: equal to the online analysis where it must be; fingerprints; judgments."""

from __future__ import annotations

import pytest

from abharness.analysis import analyze
from abharness.errors import AnalysisError, ConfigError, FingerprintMismatch
from abharness.replay import replay
from abharness.replay.logged import LoggedImpression, coec_judgments, position_ctr
from abharness.stores import open_store
from abharness.testing.fakes import DictBackend


@pytest.fixture
def store(logged_ab):
    s = open_store(logged_ab[3])
    yield s
    s.close()


def test_replay_equals_the_online_analysis_on_the_same_lists_and_clicks(logged_ab, store, toy, make_backends) -> None:
    cfg = logged_ab[0]
    corpus, _, _ = toy
    report = replay(store, cfg.experiment_id, make_backends(corpus), control="baseline", treatment="finetuned")
    assert report.identical_lists == {"baseline": 1.0, "finetuned": 1.0}
    online = analyze(store, cfg.experiment_id, config=cfg)
    assert report.replayed_online, "both arms should have A/B impressions"
    for metric, replayed in report.replayed_online.items():
        ref = online.metrics[metric]
        for side in ("control", "treatment"):
            a, b = getattr(replayed, side), getattr(ref, side)
            assert (a.arm, a.units, a.denominator) == (b.arm, b.units, b.denominator), metric
            assert a.value == pytest.approx(b.value, abs=1e-12), metric
            assert a.se == pytest.approx(b.se, abs=1e-12), metric
            assert (a.lower, a.upper) == pytest.approx((b.lower, b.upper), abs=1e-12), metric
        # and the replay's own online side (the store aggregates) is the same numbers again
        assert replayed.lift == pytest.approx(report.online[metric].lift, abs=1e-12)
        assert replayed.lift_se == pytest.approx(report.online[metric].lift_se, abs=1e-12)


def test_replay_reports_overlap_agreement_and_qrels(logged_ab, store, toy, make_backends) -> None:
    cfg, _, pool, _ = logged_ab
    corpus, queries, qrels = toy
    by_text = {t: q for q, t in queries.items()}
    report = replay(store, cfg.experiment_id, make_backends(corpus), control="baseline", treatment="finetuned",
                    qrels=qrels, query_ids=by_text)
    assert report.impressions == logged_ab[1].searches
    assert report.qrels_queries == report.distinct_queries
    assert set(report.qrels) == {"ndcg@10", "mrr@10", "recall@10"}
    assert 0.0 <= report.overlap_mean_jaccard <= 1.0 and 0.0 <= report.overlap_mean_rbo <= 1.0
    rbos = [o.rbo for o in report.most_different]
    assert rbos == sorted(rbos)
    assert report.agreement and all(a.verdict for a in report.agreement)
    d = report.to_dict()
    assert d["experiment_id"] == cfg.experiment_id and "agreement" in d
    frame = report.to_frame()  # the library's DataFrame view: one row per agreement line
    assert len(frame) == len(report.agreement)
    assert list(frame.offline_delta) == [a.offline_delta for a in report.agreement]
    assert {"offline_metric", "online_metric", "online_delta", "sign_agrees", "verdict"} <= set(frame.columns)


def test_replay_refuses_other_models_unless_asked(logged_ab, store, toy) -> None:
    cfg = logged_ab[0]
    corpus, _, _ = toy
    other = {"baseline": DictBackend(corpus, name="baseline"), "finetuned": DictBackend(corpus, name="finetuned-v2")}
    with pytest.raises(FingerprintMismatch, match="finetuned.*--allow-new-versions"):
        replay(store, cfg.experiment_id, other, control="baseline", treatment="finetuned")
    report = replay(store, cfg.experiment_id, other, control="baseline", treatment="finetuned",
                    allow_new_versions=True)
    assert report.new_versions == ("finetuned",)


def test_replay_bad_input(logged_ab, store, toy, make_backends) -> None:
    corpus, _, _ = toy
    with pytest.raises(AnalysisError, match="nope"):
        replay(store, "nope", make_backends(corpus), control="baseline", treatment="finetuned")
    with pytest.raises(ConfigError, match="no backend"):
        replay(store, logged_ab[0].experiment_id, make_backends(corpus), control="baseline", treatment="x")
    with pytest.raises(AnalysisError, match="widen"):
        replay(store, logged_ab[0].experiment_id, make_backends(corpus), control="baseline", treatment="finetuned",
               until=0.0)


def _imp(query: str, shown: list[str], clicked: list[str]) -> LoggedImpression:
    return LoggedImpression(
        impression_id=f"{query}-{len(shown)}-{','.join(clicked)}", unit_id="u", arm="a", mode="ab", query=query,
        k=len(shown), shown=tuple(shown), clicked=tuple(clicked),
        click_positions=tuple(shown.index(c) + 1 for c in clicked), fingerprints={}, latency_ms=1.0,
        fallback=False, error=False, ts=0.0, context={},
    )


def test_coec_hand_worked() -> None:
    logged = [
        _imp("q", ["a", "b"], ["a"]),
        _imp("q", ["a", "b"], []),
        _imp("q", ["b", "a"], ["a"]),
        _imp("r", ["c", "d"], ["d"]),
    ]
    # ctr@1 = clicks at rank 1 / 4 = 1/4 (only the first 'a'); ctr@2 = 2/4 ('a' at rank 2, 'd' at rank 2)
    assert position_ctr(logged).tolist() == [0.25, 0.5]
    qrels, coec = coec_judgments(logged)
    # 'a' for q: 2 clicks over expected 0.25 + 0.25 + 0.5 = 1.0 -> COEC 2 -> grade 2; 'd' for r: 1 / 0.5 = 2
    assert coec["q"]["a"] == pytest.approx(2.0)
    assert coec["r"]["d"] == pytest.approx(2.0)
    assert qrels == {"q": {"a": 2}, "r": {"d": 2}}


def test_sample_is_seeded_and_sized(logged_ab, store, toy, make_backends) -> None:
    corpus, _, _ = toy
    kw = dict(control="baseline", treatment="finetuned", sample=50, seed=3)
    a = replay(store, logged_ab[0].experiment_id, make_backends(corpus), **kw)
    b = replay(store, logged_ab[0].experiment_id, make_backends(corpus), **kw)
    assert a.impressions == 50 and a.to_dict() == b.to_dict()


def test_agreement_classification() -> None:
    from abharness.replay.agreement import classify

    assert classify((0.1, 0.05, 0.15), (0.02, 0.01, 0.03)) == (True, pytest.approx(5.0), "agree")
    assert classify((0.1, 0.05, 0.15), (-0.02, -0.03, -0.01))[2] == "disagree"
    assert classify((0.1, -0.05, 0.25), (0.02, 0.01, 0.03))[2] == "same sign (n.s.)"
    assert classify((-0.1, -0.25, 0.05), (0.02, 0.01, 0.03))[2] == "opposite sign (n.s.)"
    assert classify((float("nan"), 0, 0), (0.02, 0.01, 0.03))[2] == "n/a"
