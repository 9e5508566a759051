"""Click models: simulated users who look at a ranked list and click (pure, seeded, vectorised).

A click model turns the *relevance grades* of a shown list into clicks. Every model here works on an integer
grade matrix ``grades`` of shape (n_lists, k): ``grades[i, r]`` is the graded relevance (from qrels, 0 = not
relevant) of the document shown at rank r+1 of list i, and ``-1`` marks an empty slot (a list shorter than k).
Grades above the model's top grade are clipped to it.

Three models, each with a closed-form marginal click probability per rank (``click_probabilities``) and a
vectorised sampler (``sample``) that reproduces it:

- ``PositionBasedModel`` (PBM; Richardson, Dominowska & Ragno 2007; Craswell et al. 2008):
  P(C_r = 1) = theta_r * alpha(g_r), with examination theta_r = (1 / r) ** eta (Joachims et al. 2017).
  Clicks at different ranks are independent.
- ``CascadeModel`` (Craswell, Zoeter, Taylor & Ramsey, WSDM 2008): the user scans top-down, clicks a result
  with probability alpha(g_r) and stops after the first click:
  P(C_r = 1) = alpha(g_r) * prod_{i<r} (1 - alpha(g_i)).
- ``DBNModel`` (dynamic Bayesian network; Chapelle & Zhang, WWW 2009): examine rank 1; an examined result is
  clicked with probability alpha(g_r); a click satisfies with probability sigma(g_r) and the user stops; an
  unsatisfied user goes on to the next rank with probability gamma:
  P(E_1) = 1, P(C_r) = P(E_r) alpha_r, P(E_{r+1}) = P(E_r) gamma (1 - alpha_r sigma_r).

Attractiveness and satisfaction come from the grades through ``GradeMap``. The presets ``perfect``,
``navigational`` and ``informational`` for binary relevance are the user models of Hofmann, Whiteson & de Rijke,
"Fidelity, soundness, and efficiency of interleaved comparison methods", ACM TOIS 31(4), 2013 (Table 3):
P(click | R) and P(stop | R) per relevance level. For graded relevance (G > 1) they are interpolated on the
gain scale (2^g - 1) / (2^G - 1), as in Chapelle & Zhang's attractiveness-from-grade mapping.

Dwell times (``DwellModel.sample``) are log-normal with a longer median for relevant documents (satisfied reads).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from abharness.errors import ConfigError

__all__ = [
    "GradeMap",
    "PRESETS",
    "ClickModel",
    "PositionBasedModel",
    "CascadeModel",
    "DBNModel",
    "ClickModelKind",
    "make_click_model",
    "DwellModel",
    "CLICK_MODEL_KINDS",
]

ClickModelKind = Literal["pbm", "cascade", "dbn"]
CLICK_MODEL_KINDS: tuple[str, ...] = ("pbm", "cascade", "dbn")


def _check_probs(name: str, values: tuple[float, ...]) -> None:
    for v in values:
        if not (0.0 <= float(v) <= 1.0) or not np.isfinite(v):
            raise ConfigError(f"{name} must be probabilities in [0, 1], got {values!r}; fix the click model parameters")


@dataclass(frozen=True, slots=True)
class GradeMap:
    """Per-grade click (attractiveness) and stop (satisfaction) probabilities; index = relevance grade.

    ``attractiveness[g]`` = P(click | examined, grade g); ``satisfaction[g]`` = P(stop | clicked, grade g).
    """

    attractiveness: tuple[float, ...]
    satisfaction: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.attractiveness) < 2 or len(self.attractiveness) != len(self.satisfaction):
            raise ConfigError(
                "GradeMap needs the same number (>= 2) of attractiveness and satisfaction values, one per grade "
                f"0..G; got {len(self.attractiveness)} and {len(self.satisfaction)}"
            )
        _check_probs("attractiveness", self.attractiveness)
        _check_probs("satisfaction", self.satisfaction)

    @property
    def max_grade(self) -> int:
        return len(self.attractiveness) - 1

    @classmethod
    def preset(cls, name: str, max_grade: int = 1) -> GradeMap:
        """A Hofmann et al. (2013) user type (``perfect``, ``navigational``, ``informational``) for grades 0..max_grade."""
        if name not in PRESETS:
            raise ConfigError(f"unknown click preset {name!r}; choose one of {sorted(PRESETS)}")
        if max_grade < 1:
            raise ConfigError(f"max_grade must be >= 1, got {max_grade}")
        (a0, a1), (s0, s1) = PRESETS[name]
        return cls.interpolate(a0, a1, s0, s1, max_grade)

    @classmethod
    def interpolate(cls, a_min: float, a_max: float, s_min: float, s_max: float, max_grade: int) -> GradeMap:
        """Probabilities rising from the grade-0 value to the top-grade value on the gain scale (2^g-1)/(2^G-1)."""
        gains = (2.0 ** np.arange(max_grade + 1) - 1.0) / (2.0**max_grade - 1.0)
        return cls(
            attractiveness=tuple(float(a_min + (a_max - a_min) * g) for g in gains),
            satisfaction=tuple(float(s_min + (s_max - s_min) * g) for g in gains),
        )

    def _lookup(self, table: tuple[float, ...], grades: np.ndarray) -> np.ndarray:
        values = np.concatenate([np.asarray(table, dtype=np.float64), [0.0]])  # index -1 -> empty slot -> 0
        g = np.asarray(grades, dtype=np.int64)
        g = np.where(g < 0, -1, np.minimum(g, self.max_grade))
        return values[g]

    def alpha(self, grades: np.ndarray) -> np.ndarray:
        """Attractiveness per cell of a grade matrix (0 for empty slots)."""
        return self._lookup(self.attractiveness, grades)

    def sigma(self, grades: np.ndarray) -> np.ndarray:
        """Satisfaction per cell of a grade matrix (0 for empty slots)."""
        return self._lookup(self.satisfaction, grades)


# name -> ((P(click|R=0), P(click|R=1)), (P(stop|R=0), P(stop|R=1)))  -- Hofmann et al. 2013, Table 3.
PRESETS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "perfect": ((0.0, 1.0), (0.0, 0.0)),
    "navigational": ((0.05, 0.95), (0.2, 0.9)),
    "informational": ((0.4, 0.9), (0.1, 0.5)),
}


def _as_grades(grades: np.ndarray) -> np.ndarray:
    g = np.asarray(grades)
    if g.ndim == 1:
        g = g[None, :]
    if g.ndim != 2:
        raise ConfigError(f"grades must be a (n_lists, k) integer matrix, got shape {g.shape}")
    return g.astype(np.int64, copy=False)


@runtime_checkable
class ClickModel(Protocol):
    """A simulated user: grades of a shown list in, clicks out."""

    name: str
    grade_map: GradeMap

    def click_probabilities(self, grades: np.ndarray) -> np.ndarray:
        """Marginal P(click at rank r) for each list, shape (n_lists, k)."""

    def sample(self, grades: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Boolean click matrix, shape (n_lists, k), drawn from the model with ``rng``."""


@dataclass(frozen=True, slots=True)
class PositionBasedModel:
    """PBM: P(C_r) = theta_r * alpha(g_r), theta_r = (1/r)**eta unless ``examination`` is given explicitly."""

    grade_map: GradeMap
    eta: float = 1.0
    examination: tuple[float, ...] | None = None
    name: str = field(default="pbm", init=False)

    def __post_init__(self) -> None:
        if self.eta < 0 or not np.isfinite(self.eta):
            raise ConfigError(f"PBM eta must be a finite number >= 0, got {self.eta}")
        if self.examination is not None:
            _check_probs("examination", self.examination)

    def theta(self, k: int) -> np.ndarray:
        """Examination probability per rank 1..k."""
        if self.examination is not None:
            if len(self.examination) < k:
                raise ConfigError(f"PBM examination has {len(self.examination)} ranks but lists have k={k}")
            return np.asarray(self.examination[:k], dtype=np.float64)
        return (1.0 / np.arange(1, k + 1)) ** self.eta

    def click_probabilities(self, grades: np.ndarray) -> np.ndarray:
        g = _as_grades(grades)
        return self.theta(g.shape[1])[None, :] * self.grade_map.alpha(g)

    def sample(self, grades: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        p = self.click_probabilities(grades)
        return rng.random(p.shape) < p


@dataclass(frozen=True, slots=True)
class CascadeModel:
    """Cascade: scan top-down, click with P = alpha(g_r), stop after the first click (at most one click)."""

    grade_map: GradeMap
    name: str = field(default="cascade", init=False)

    def click_probabilities(self, grades: np.ndarray) -> np.ndarray:
        a = self.grade_map.alpha(_as_grades(grades))
        reach = np.cumprod(np.concatenate([np.ones((a.shape[0], 1)), 1.0 - a[:, :-1]], axis=1), axis=1)
        return reach * a

    def sample(self, grades: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        a = self.grade_map.alpha(_as_grades(grades))
        would = rng.random(a.shape) < a
        first = np.argmax(would, axis=1)
        clicks = np.zeros_like(would)
        rows = np.flatnonzero(would.any(axis=1))
        clicks[rows, first[rows]] = True
        return clicks


@dataclass(frozen=True, slots=True)
class DBNModel:
    """DBN (Chapelle & Zhang 2009): click with alpha, satisfied (stop) with sigma, else continue with gamma."""

    grade_map: GradeMap
    gamma: float = 0.9
    name: str = field(default="dbn", init=False)

    def __post_init__(self) -> None:
        _check_probs("DBN gamma", (self.gamma,))

    def click_probabilities(self, grades: np.ndarray) -> np.ndarray:
        g = _as_grades(grades)
        a, s = self.grade_map.alpha(g), self.grade_map.sigma(g)
        out = np.empty_like(a)
        examined = np.ones(a.shape[0])
        for r in range(a.shape[1]):
            out[:, r] = examined * a[:, r]
            examined = examined * self.gamma * (1.0 - a[:, r] * s[:, r])
        return out

    def sample(self, grades: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        g = _as_grades(grades)
        a, s = self.grade_map.alpha(g), self.grade_map.sigma(g)
        n, k = a.shape
        u = rng.random((3, n, k))
        clicks = np.zeros((n, k), dtype=bool)
        examined = np.ones(n, dtype=bool)
        for r in range(k):
            c = examined & (u[0, :, r] < a[:, r])
            clicks[:, r] = c
            satisfied = c & (u[1, :, r] < s[:, r])
            examined = examined & ~satisfied & (u[2, :, r] < self.gamma)
        return clicks


def make_click_model(
    kind: str = "pbm",
    *,
    preset: str = "navigational",
    max_grade: int = 1,
    eta: float = 1.0,
    gamma: float = 0.9,
    grade_map: GradeMap | None = None,
) -> ClickModel:
    """Build a click model by name (``pbm``, ``cascade``, ``dbn``) with a preset or explicit ``GradeMap``."""
    gm = grade_map if grade_map is not None else GradeMap.preset(preset, max_grade)
    if kind == "pbm":
        return PositionBasedModel(gm, eta=eta)
    if kind == "cascade":
        return CascadeModel(gm)
    if kind == "dbn":
        return DBNModel(gm, gamma=gamma)
    raise ConfigError(f"unknown click model {kind!r}; choose one of {list(CLICK_MODEL_KINDS)}")


@dataclass(frozen=True, slots=True)
class DwellModel:
    """Log-normal dwell times: median ``relevant_median_ms`` on relevant (grade > 0) clicks, else ``other_median_ms``."""

    relevant_median_ms: float = 45_000.0
    other_median_ms: float = 8_000.0
    sigma: float = 0.8

    def __post_init__(self) -> None:
        if self.relevant_median_ms <= 0 or self.other_median_ms <= 0 or self.sigma < 0:
            raise ConfigError(
                f"dwell medians must be > 0 and sigma >= 0, got {self.relevant_median_ms}, "
                f"{self.other_median_ms}, {self.sigma}"
            )

    def sample(self, grades: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Dwell (ms) for clicked results with these grades."""
        g = np.asarray(grades)
        median = np.where(g > 0, self.relevant_median_ms, self.other_median_ms)
        return median * np.exp(self.sigma * rng.standard_normal(g.shape))
