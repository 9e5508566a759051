"""Probe pairs: a user's list of text pairs expected to move closer or apart after fine-tuning.

File format (TSV, UTF-8): ``expectation<TAB>text A<TAB>text B`` per line, expectation ``closer`` or ``apart``;
blank lines and ``#`` comments are ignored. The packaged default (SciFact biomedical domain) is
``abharness/resources/probes/scifact_biomedical.tsv``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from abharness.errors import DataError

__all__ = ["ProbePair", "ProbeOutcome", "load_probes", "default_probe_file", "score_probes", "EXPECTATIONS"]

EXPECTATIONS = ("closer", "apart")


@dataclass(frozen=True, slots=True)
class ProbePair:
    expectation: str
    a: str
    b: str
    line: int = 0


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    """Cosine of a probe pair under each model, and whether it moved the expected way by more than a margin."""

    expectation: str
    a: str
    b: str
    cos_baseline: float
    cos_candidate: float
    delta: float
    as_expected: bool


def default_probe_file() -> Path:
    """Path of the packaged SciFact-domain probe file."""
    return Path(str(resources.files("abharness") / "resources" / "probes" / "scifact_biomedical.tsv"))


def load_probes(path: str | Path | None = None) -> list[ProbePair]:
    """Parse a probe file (None = the packaged default). Raises ``DataError`` naming the file and line."""
    file = Path(path) if path is not None else default_probe_file()
    if not file.is_file():
        raise DataError(f"probe file {file} does not exist; pass an existing TSV file (see docs/evaluation.md)")
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{file}: not valid UTF-8 ({exc.reason}); re-encode the probe file as UTF-8") from exc
    pairs: list[ProbePair] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise DataError(
                f"{file}:{number}: expected 3 TAB-separated fields 'closer|apart<TAB>text A<TAB>text B', "
                f"found {len(fields)} in {line[:80]!r}; separate the fields with TAB characters"
            )
        expectation, a, b = (f.strip() for f in fields)
        if expectation.lower() not in EXPECTATIONS:
            raise DataError(
                f"{file}:{number}: expectation {expectation!r} is not one of {', '.join(EXPECTATIONS)}; "
                "write 'closer' or 'apart' in the first field"
            )
        if not a or not b:
            raise DataError(f"{file}:{number}: empty text in {line[:80]!r}; both texts of a probe pair are required")
        pairs.append(ProbePair(expectation.lower(), a, b, number))
    if not pairs:
        raise DataError(f"{file}: no probe pairs found; add lines 'closer<TAB>text A<TAB>text B'")
    return pairs


def score_probes(
    pairs: list[ProbePair],
    base_a: np.ndarray,
    base_b: np.ndarray,
    cand_a: np.ndarray,
    cand_b: np.ndarray,
    *,
    min_moved: float = 0.0,
) -> list[ProbeOutcome]:
    """Cosines of each pair under both models (rows are unit-normalised embeddings of A and B, in pair order).

    A ``closer`` pair is as expected when cos rises by more than ``min_moved``; an ``apart`` pair when it falls
    by more than ``min_moved``.
    """

    def cos(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        y = y / np.linalg.norm(y, axis=1, keepdims=True)
        return np.sum(x * y, axis=1)

    cb, cc = cos(base_a, base_b), cos(cand_a, cand_b)
    out = []
    for pair, before, after in zip(pairs, cb, cc):
        delta = float(after - before)
        ok = delta > min_moved if pair.expectation == "closer" else delta < -min_moved
        out.append(ProbeOutcome(pair.expectation, pair.a, pair.b, float(before), float(after), delta, ok))
    return out
