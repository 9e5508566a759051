"""Interleaving vs A/B sensitivity, by vectorised simulation over two arms' precomputed rankings.

The question: how many impressions does each method need to detect the difference between the two rankers
with 80% power at a two-sided alpha = 0.05?

Setup (same for both methods). Units (users) each issue ``impressions_per_unit`` searches; queries are drawn
from the pool's Zipf popularity and re-issued with probability ``repeat_prob`` (as in ``plan_traffic``). A
click model (``abharness.core.clickmodels``) turns the qrels grades of the shown list into clicks.

- A/B: units are split 50/50; a unit sees its arm's top-k. Metrics are ratio metrics over impressions
  (CTR = clicks / impressions, MRR of clicks = sum of 1/rank of the first click / impressions), tested with
  the delta method over units (Deng, Knoblich & Lu, KDD 2018): for an arm with per-unit sums (x_i, n_i),
  R = sum x / sum n and Var(R) = (s_x^2 - 2 R s_xn + R^2 s_n^2) / (N nbar^2); z = (R_T - R_C) / sqrt(V_T + V_C).
- Interleaving: every impression shows the team-draft interleaving (Radlinski, Kurup & Joachims, CIKM 2008;
  ``abharness.core.interleaving.team_draft``) of both top-k lists. Clicks are credited to the team that
  contributed the result; an impression is a win for the team with more clicks (``credit_two_teams``). Per unit, the preference
  score is (wins_T - wins_C) / impressions; a one-sample t-test over units tests its mean against 0
  (Chapelle, Joachims, Radlinski & Yue, ACM TOIS 2012).

Required sample size. A large pilot run estimates each method's effect delta and the variance of its
estimator per unit, V; the units needed are n = (z_{1-alpha/2} + z_{power})^2 V / delta^2 (normal
approximation), times ``impressions_per_unit`` for impressions. The prediction is then *checked and refined*:
batches of ``replicates`` independent experiments are simulated at sizes stepping from the prediction by
factors of 1.5 until the empirical power (fraction with p < alpha) brackets the target, and the size is
interpolated in log(size). The reported "impressions needed" is that simulated size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sps

from abharness.core.clickmodels import ClickModel
from abharness.core.interleaving import credit_two_teams, team_draft
from abharness.errors import ConfigError
from abharness.simulate.population import QueryPool

__all__ = ["ArmLists", "MethodPower", "SensitivityResult", "prepare_arm_lists", "sensitivity_study",
           "ab_unit_sums", "interleaving_unit_scores", "delta_method_z", "draw_unit_queries"]


@dataclass(frozen=True)
class ArmLists:
    """Grade matrices aligned to the pool's queries: control/treatment (Q, k) and M interleavings (Q, M, k)."""

    control: np.ndarray
    treatment: np.ndarray
    interleaved: np.ndarray
    interleaved_team_is_treatment: np.ndarray
    k: int


def prepare_arm_lists(
    pool: QueryPool,
    control: Mapping[str, Sequence[str]],
    treatment: Mapping[str, Sequence[str]],
    *,
    k: int = 10,
    names: tuple[str, str] = ("control", "treatment"),
) -> ArmLists:
    """Turn both arms' rankings of the pool's queries into grade matrices, with *every* team draft enumerated.

    Team draft tosses a coin only at the start of each round (when both teams have as many picks), so a top-k
    interleaving is determined by at most ceil(k/2) coin tosses. Enumerating all 2^ceil(k/2) toss sequences
    and drawing one uniformly per impression reproduces the exact distribution of interleaved lists (a fixed
    random sample of interleavings would bias the outcome for the most popular queries).
    """
    missing = [q for q in pool.query_ids if q not in control or q not in treatment]
    if missing:
        raise ConfigError(f"{len(missing)} pool queries have no ranking in one arm (e.g. {missing[0]!r}); "
                          "rank every pool query with both arms")
    if k < 1 or k > 24:
        raise ConfigError(f"k must lie in 1..24 for the enumerated team drafts, got {k}")
    q_n, m = len(pool), 2 ** ((k + 1) // 2)
    g_c = np.stack([pool.grades(q, list(control[q]), k) for q in pool.query_ids])
    g_t = np.stack([pool.grades(q, list(treatment[q]), k) for q in pool.query_ids])
    g_i = np.full((q_n, m, k), -1, dtype=np.int64)
    team = np.zeros((q_n, m, k), dtype=bool)
    for qi, q in enumerate(pool.query_ids):
        lists = {names[0]: list(control[q])[:k], names[1]: list(treatment[q])[:k]}
        for j in range(m):
            merged = team_draft(lists, k, _CoinSequence(j))  # type: ignore[arg-type]
            docs = [d for d, _ in merged]
            g_i[qi, j] = pool.grades(q, docs, k)
            for r, (_, t) in enumerate(merged[:k]):
                team[qi, j, r] = t == names[1]
    return ArmLists(g_c, g_t, g_i, team, k)


class _CoinSequence:
    """A stand-in for ``random.Random`` whose coin tosses are the bits of ``code`` (lowest bit first)."""

    def __init__(self, code: int) -> None:
        self._code = code

    def randrange(self, n: int) -> int:
        if n != 2:
            raise ConfigError(f"enumerated team draft supports two teams, got a choice among {n}")
        bit, self._code = self._code & 1, self._code >> 1
        return bit


def draw_unit_queries(
    n_units: int, m: int, weights: np.ndarray, repeat_prob: float, rng: np.random.Generator
) -> np.ndarray:
    """(n_units, m) query indices: Zipf draws, each re-issuing an earlier query of the unit w.p. repeat_prob."""
    q = rng.choice(len(weights), size=(n_units, m), p=weights)
    for j in range(1, m):
        rep = rng.random(n_units) < repeat_prob
        src = (rng.random(n_units) * j).astype(np.int64)
        q[rep, j] = q[rep, src[rep]]
    return q


def ab_unit_sums(
    qidx: np.ndarray, grades: np.ndarray, model: ClickModel, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-unit (clicks, sum of reciprocal rank of first click, impressions) for units seeing ``grades``."""
    n, m = qidx.shape
    clicks = model.sample(grades[qidx.ravel()], rng)
    any_click = clicks.any(axis=1)
    rr = np.where(any_click, 1.0 / (np.argmax(clicks, axis=1) + 1), 0.0)
    return clicks.sum(axis=1).reshape(n, m).sum(axis=1), rr.reshape(n, m).sum(axis=1), np.full(n, m, dtype=float)


def interleaving_unit_scores(
    qidx: np.ndarray, lists: ArmLists, model: ClickModel, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-unit (treatment wins, control wins, ties) over interleaved impressions of ``qidx``."""
    n, m = qidx.shape
    flat = qidx.ravel()
    which = rng.integers(0, lists.interleaved.shape[1], size=flat.size)
    g = lists.interleaved[flat, which]
    team = lists.interleaved_team_is_treatment[flat, which]
    win_t, win_c, tie = credit_two_teams(model.sample(g, rng), team)
    return tuple(x.reshape(n, m).sum(axis=1).astype(float) for x in (win_t, win_c, tie))  # type: ignore[return-value]


def _ratio_var(x: np.ndarray, n: np.ndarray) -> tuple[float, float]:
    """Delta-method ratio estimate sum(x)/sum(n) and its variance over units."""
    big_n = x.size
    r = x.sum() / n.sum()
    if big_n < 2:
        return float(r), float("nan")
    cov = np.cov(np.vstack([x, n]), ddof=1)
    v = (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / (big_n * n.mean() ** 2)
    return float(r), float(v)


def delta_method_z(xc: np.ndarray, nc: np.ndarray, xt: np.ndarray, nt: np.ndarray) -> tuple[float, float, float]:
    """(difference R_T - R_C, its standard error, two-sided p) of a ratio metric, clustered by unit."""
    rc, vc = _ratio_var(xc, nc)
    rt, vt = _ratio_var(xt, nt)
    se = float(np.sqrt(vc + vt))
    diff = rt - rc
    p = float(2 * sps.norm.sf(abs(diff) / se)) if se > 0 else (0.0 if diff != 0 else 1.0)
    return diff, se, p


@dataclass(frozen=True)
class MethodPower:
    """One method's pilot effect, its predicted sample size, and the size at which simulation reaches the power.

    ``impressions_needed`` is the simulated answer (log-linear interpolation of the empirical power curve
    between the bracketing sizes) when ``simulated``; else (too big to simulate within the budget) the
    normal-approximation prediction. ``curve`` lists (impressions, empirical power) points that were run.
    """

    method: str
    metric: str
    effect: float
    se_pilot: float
    predicted_units: int
    predicted_impressions: int
    units_needed: int
    impressions_needed: int
    simulated: bool
    replicates: int
    curve: tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class SensitivityResult:
    """Impressions each method needs for the target power; ``ratio`` = A/B needs / interleaving needs."""

    alpha: float
    power: float
    impressions_per_unit: int
    click_model: str
    ab: tuple[MethodPower, ...]
    interleaving: MethodPower
    primary_ab_metric: str

    @property
    def primary_ab(self) -> MethodPower:
        return next(p for p in self.ab if p.metric == self.primary_ab_metric)

    @property
    def ratio(self) -> float:
        return self.primary_ab.impressions_needed / max(self.interleaving.impressions_needed, 1)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["ratio"] = self.ratio
        return out


def _needed(effect: float, var_per_unit: float, alpha: float, power: float) -> int:
    if effect == 0 or not np.isfinite(var_per_unit):
        return 10**12
    z = sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)
    return max(2, int(np.ceil(z * z * var_per_unit / effect**2)))


def _search_size(
    power_at: Callable[[int, int], float], n0: int, target: float, m: int, replicates: int, budget: int,
    units_per_step: int,
) -> tuple[int, bool, int, tuple[tuple[int, float], ...]]:
    """Find the size (in units) where simulated power crosses ``target``, starting at the prediction ``n0``.

    Steps by a factor 1.5 until the target is bracketed, then interpolates linearly in log(size). Each
    evaluation runs ``reps`` experiments; the whole search stays within ``budget`` simulated impressions.
    Returns (units, simulated?, replicates per point, curve).
    """
    reps = int(min(replicates, budget // max(1, 8 * n0 * m * units_per_step)))
    if reps < 50:
        return n0, False, 0, ()
    points: dict[int, float] = {}

    def at(n: int) -> float:
        if n not in points:
            points[n] = power_at(n, reps)
        return points[n]

    n = n0
    lo = hi = None
    for _ in range(10):
        if at(n) >= target:
            hi = n
            if lo is not None or n <= 2:
                break
            n = max(2, int(n / 1.5))
        else:
            lo = n
            if hi is not None:
                break
            n = int(np.ceil(n * 1.5))
    curve = tuple(sorted((k * m * units_per_step, v) for k, v in points.items()))
    if hi is None:
        return n0, False, reps, curve
    below = [k for k in points if points[k] < target and k < hi]
    if not below:
        return hi, True, reps, curve
    lo = max(below)
    p_lo, p_hi = points[lo], points[hi]
    frac = (target - p_lo) / (p_hi - p_lo) if p_hi > p_lo else 1.0
    units = int(np.ceil(np.exp(np.log(lo) + frac * (np.log(hi) - np.log(lo)))))
    return units, True, reps, curve


def sensitivity_study(
    pool: QueryPool,
    lists: ArmLists,
    model: ClickModel,
    *,
    impressions_per_unit: int = 10,
    repeat_prob: float = 0.3,
    alpha: float = 0.05,
    power: float = 0.8,
    pilot_units: int = 100_000,
    replicates: int = 200,
    primary_ab_metric: str = "ctr",
    max_simulated_impressions: int = 60_000_000,
    seed: int = 0,
    on_step: Callable[[str], None] | None = None,
) -> SensitivityResult:
    """Predict, then find by simulation, the impressions A/B (CTR, MRR) and interleaving need (module docstring)."""
    if primary_ab_metric not in ("ctr", "mrr"):
        raise ConfigError(f"primary_ab_metric must be 'ctr' or 'mrr', got {primary_ab_metric!r}")
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ConfigError(f"alpha and power must lie in (0, 1), got {alpha} and {power}")
    step = on_step or (lambda s: None)
    rng = np.random.default_rng(seed)
    m = impressions_per_unit
    w = pool.weights

    def ab_experiment(n_per_arm: int) -> dict[str, tuple[float, float, float]]:
        qc = draw_unit_queries(n_per_arm, m, w, repeat_prob, rng)
        qt = draw_unit_queries(n_per_arm, m, w, repeat_prob, rng)
        cc, rc, nc = ab_unit_sums(qc, lists.control, model, rng)
        ct, rt, nt = ab_unit_sums(qt, lists.treatment, model, rng)
        return {"ctr": delta_method_z(cc, nc, ct, nt), "mrr": delta_method_z(rc, nc, rt, nt)}

    def il_experiment(n_units: int) -> tuple[float, float, float]:
        q = draw_unit_queries(n_units, m, w, repeat_prob, rng)
        wt, wc, _ = interleaving_unit_scores(q, lists, model, rng)
        s = (wt - wc) / m
        mean, sd = float(s.mean()), float(s.std(ddof=1))
        se = sd / np.sqrt(n_units)
        p = float(2 * sps.t.sf(abs(mean) / se, df=n_units - 1)) if se > 0 else (0.0 if mean != 0 else 1.0)
        return mean, se, p

    step("pilot experiments")
    half = pilot_units // 2
    pilot_ab = ab_experiment(half)
    pilot_il = il_experiment(pilot_units)
    ab_out = []
    for metric, (eff, se, _) in pilot_ab.items():
        per_arm = _needed(eff, se * se * half, alpha, power)  # se^2 * N = per-unit variance of the difference
        step(f"A/B {metric}: searching the size with {power:.0%} power (predicted {2 * per_arm * m:,} impressions)")
        units, simulated, reps, curve = _search_size(
            lambda n, r, metric=metric: float(np.mean([ab_experiment(n)[metric][2] < alpha for _ in range(r)])),
            per_arm, power, m, replicates, max_simulated_impressions, 2,
        )
        ab_out.append(MethodPower("ab", metric, eff, se, 2 * per_arm, 2 * per_arm * m, 2 * units, 2 * units * m,
                                  simulated, reps, curve))
    eff, se, _ = pilot_il
    n_il = _needed(eff, se * se * pilot_units, alpha, power)
    step(f"interleaving: searching the size with {power:.0%} power (predicted {n_il * m:,} impressions)")
    units, simulated, reps, curve = _search_size(
        lambda n, r: float(np.mean([il_experiment(n)[2] < alpha for _ in range(r)])),
        n_il, power, m, replicates, max_simulated_impressions, 1,
    )
    il = MethodPower("interleaving", "preference", float(eff), float(se), n_il, n_il * m, units, units * m,
                     simulated, reps, curve)
    return SensitivityResult(alpha, power, m, model.name, tuple(ab_out), il, primary_ab_metric)
