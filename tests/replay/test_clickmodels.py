"""Click models reproduce their configured click probabilities; samplers are seeded and vectorised."""

from __future__ import annotations

import numpy as np
import pytest

from abharness.core.clickmodels import (
    CascadeModel,
    DBNModel,
    DwellModel,
    GradeMap,
    PositionBasedModel,
    make_click_model,
)
from abharness.errors import ConfigError

GRADES = np.array([[1, 0, 0, 1, 0, 1, 0, 0, 0, 1], [0, 0, 1, 1, 1, 0, 0, 1, -1, -1]])
N = 40_000


def _empirical(model, grades: np.ndarray, seed: int = 7) -> np.ndarray:
    rows = np.repeat(grades, N, axis=0)
    clicks = model.sample(rows, np.random.default_rng(seed))
    return clicks.reshape(grades.shape[0], N, grades.shape[1]).mean(axis=1)


@pytest.mark.parametrize("kind", ["pbm", "cascade", "dbn"])
@pytest.mark.parametrize("preset", ["navigational", "informational"])
def test_sampled_click_rates_match_the_closed_form(kind: str, preset: str) -> None:
    model = make_click_model(kind, preset=preset)
    expected = model.click_probabilities(GRADES)
    observed = _empirical(model, GRADES)
    # 4.5 binomial standard errors per cell (200 cells; family-wise false alarm well under 1%).
    se = np.sqrt(np.maximum(expected * (1 - expected), 1e-12) / N)
    assert np.all(np.abs(observed - expected) <= 4.5 * se + 1e-12), (observed - expected) / np.maximum(se, 1e-12)


def test_pbm_closed_form_is_examination_times_attractiveness() -> None:
    gm = GradeMap(attractiveness=(0.1, 0.8), satisfaction=(0.0, 0.0))
    model = PositionBasedModel(gm, eta=1.0)
    p = model.click_probabilities(np.array([[1, 0, 1, -1]]))
    np.testing.assert_allclose(p, [[0.8, 0.1 / 2, 0.8 / 3, 0.0]])


def test_cascade_closed_form_hand_worked_and_at_most_one_click() -> None:
    gm = GradeMap(attractiveness=(0.2, 0.6), satisfaction=(0.0, 0.0))
    model = CascadeModel(gm)
    p = model.click_probabilities(np.array([[0, 1, 1]]))
    np.testing.assert_allclose(p, [[0.2, 0.8 * 0.6, 0.8 * 0.4 * 0.6]])
    clicks = model.sample(np.repeat(np.array([[0, 1, 1]]), 5000, axis=0), np.random.default_rng(0))
    assert clicks.sum(axis=1).max() == 1


def test_dbn_reduces_to_cascade_when_gamma_and_satisfaction_are_one() -> None:
    gm = GradeMap(attractiveness=(0.3, 0.7), satisfaction=(1.0, 1.0))
    np.testing.assert_allclose(
        DBNModel(gm, gamma=1.0).click_probabilities(GRADES), CascadeModel(gm).click_probabilities(GRADES)
    )


def test_dbn_hand_worked() -> None:
    gm = GradeMap(attractiveness=(0.2, 0.5), satisfaction=(0.1, 0.6))
    p = DBNModel(gm, gamma=0.8).click_probabilities(np.array([[1, 0]]))
    e2 = 0.8 * (1 - 0.5 * 0.6)
    np.testing.assert_allclose(p, [[0.5, e2 * 0.2]])


def test_sampling_is_seeded() -> None:
    model = make_click_model("dbn")
    rows = np.repeat(GRADES, 100, axis=0)
    a = model.sample(rows, np.random.default_rng(3))
    b = model.sample(rows, np.random.default_rng(3))
    c = model.sample(rows, np.random.default_rng(4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_graded_presets_rise_with_grade() -> None:
    gm = GradeMap.preset("informational", max_grade=3)
    assert gm.attractiveness[0] == pytest.approx(0.4) and gm.attractiveness[-1] == pytest.approx(0.9)
    assert list(gm.attractiveness) == sorted(gm.attractiveness)
    # grades above the top grade are clipped to it; empty slots are never clicked
    np.testing.assert_allclose(gm.alpha(np.array([[7, -1]])), [[0.9, 0.0]])


def test_empty_slots_are_never_clicked() -> None:
    for kind in ("pbm", "cascade", "dbn"):
        clicks = make_click_model(kind, preset="perfect").sample(np.full((100, 5), -1), np.random.default_rng(0))
        assert not clicks.any()


def test_dwell_is_longer_on_relevant_clicks() -> None:
    d = DwellModel().sample(np.array([1] * 2000 + [0] * 2000), np.random.default_rng(0))
    assert np.median(d[:2000]) > 3 * np.median(d[2000:])


@pytest.mark.parametrize(
    "build",
    [
        lambda: GradeMap(attractiveness=(0.1, 1.2), satisfaction=(0.0, 0.0)),
        lambda: GradeMap(attractiveness=(0.1,), satisfaction=(0.0,)),
        lambda: make_click_model("ucm"),
        lambda: GradeMap.preset("lazy"),
        lambda: DBNModel(GradeMap.preset("perfect"), gamma=1.5),
    ],
)
def test_bad_parameters_raise_config_error(build) -> None:
    with pytest.raises(ConfigError):
        build()


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.int64, st.tuples(st.integers(1, 4), st.integers(1, 12)), elements=st.integers(-1, 3)),
    st.sampled_from(["pbm", "cascade", "dbn"]),
    st.sampled_from(["perfect", "navigational", "informational"]),
)
def test_click_probabilities_are_probabilities_and_cascade_sums_to_at_most_one(grades, kind, preset) -> None:
    model = make_click_model(kind, preset=preset, max_grade=3)
    p = model.click_probabilities(grades)
    assert p.shape == grades.shape
    assert np.all(p >= 0) and np.all(p <= 1)
    assert np.all(p[grades < 0] == 0)
    if kind == "cascade":  # one click at most: the marginals are disjoint events
        assert np.all(p.sum(axis=1) <= 1 + 1e-12)
