"""The evaluation suite file (YAML): which checks run, on which data, with which thresholds.

A boundary object, so pydantic validates it; every field has a default, so an empty file (or no file) runs the
full default suite. Data set names are folders under the data directory (``--data DIR``), e.g. ``scifact``.
``docs/evaluation.md`` shows a complete file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from abharness.core.irmetrics import parse_ir_metrics
from abharness.errors import ConfigError

__all__ = [
    "Suite",
    "RetrievalSuite",
    "STSSet",
    "ClassificationSuite",
    "ClusteringSuite",
    "GeometrySuite",
    "ProbeSuite",
    "LeakageSuite",
    "OverfittingSuite",
    "MapSuite",
    "load_suite",
    "restrict_suite",
    "CHECKS",
]

CHECKS = ("retrieval", "sts", "classification", "clustering", "geometry", "probes", "leakage", "overfitting", "maps")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrievalSuite(_Strict):
    enabled: bool = True
    dataset: str = "scifact"
    split: str = "test"
    metrics: tuple[str, ...] = ("recall@10", "mrr@10", "ndcg@10", "map@100")
    primary_metric: str = "ndcg@10"
    depth: int = Field(100, ge=1, description="documents retrieved per query")
    worst_queries: int = Field(10, ge=0, description="how many most-hurt queries to list")
    sample_queries: int | None = Field(None, ge=1, description="quick runs: keep this many judged queries")
    sample_distractors: int | None = Field(
        None, ge=0, description="quick runs: keep the judged docs plus this many other docs (smaller corpus)"
    )

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(str(m) for m in parse_ir_metrics(value))

    @field_validator("primary_metric")
    @classmethod
    def _primary(cls, value: str) -> str:
        return str(parse_ir_metrics([value])[0])


class STSSet(_Strict):
    dataset: str
    loader: Literal["stsb", "sick"]
    split: str = "test"
    max_pairs: int | None = Field(None, ge=10)


class STSSuite(_Strict):
    enabled: bool = True
    sets: tuple[STSSet, ...] = (
        STSSet(dataset="stsbenchmark", loader="stsb", split="test"),
        STSSet(dataset="sick", loader="sick", split="test"),
    )


class ClassificationSuite(_Strict):
    enabled: bool = True
    dataset: str = "trec_qc"
    train_split: str = "train"
    test_split: str = "test"
    max_train: int | None = Field(3000, ge=20, description="stratified sample of the train split (None = all)")
    c: float = Field(1.0, gt=0, description="inverse L2 regularisation of the logistic regression")


class ClusteringSuite(_Strict):
    enabled: bool = True
    dataset: str = "trec_qc"
    split: str = "test"
    max_items: int | None = Field(None, ge=10)
    n_init: int = Field(10, ge=1)


class GeometrySuite(_Strict):
    enabled: bool = True
    sts_min_score: float = Field(4.0, description="STS pairs with gold >= this count as positive pairs")
    random_pairs: int = Field(5000, ge=10, description="random corpus pairs for the anisotropy estimate")


class ProbeSuite(_Strict):
    enabled: bool = True
    file: str | None = Field(None, description="probe file; None = the packaged default for the SciFact domain")
    min_moved: float = Field(0.0, ge=0, description="a cosine change must exceed this to count as a move")


class LeakageSuite(_Strict):
    enabled: bool = True
    near_duplicate_cosine: float = Field(0.95, gt=0, le=1)
    max_leaked_fraction: float = Field(0.0, ge=0, le=1, description="fail when leaked test queries exceed this")
    max_cases: int = Field(20, ge=0)


class OODSet(_Strict):
    dataset: str
    split: str = "test"
    sample_queries: int | None = Field(None, ge=1)
    sample_distractors: int | None = Field(None, ge=0)


class OverfittingSuite(_Strict):
    enabled: bool = True
    sets: tuple[OODSet, ...] = (OODSet(dataset="cranfield"), OODSet(dataset="cisi"))
    margin: float = Field(0.02, ge=0, description="flag an out-of-domain drop of the primary metric beyond this")


class MapSuite(_Strict):
    enabled: bool = True
    method: Literal["umap", "tsne"] = "umap"
    dataset: str = "trec_qc"
    split: str = "test"
    sample: int = Field(500, ge=10)


class Suite(_Strict):
    """The whole suite. ``alpha`` and ``n_resamples`` apply to every significance test."""

    name: str = "default"
    seed: int = 0
    alpha: float = Field(0.05, gt=0, lt=1)
    n_resamples: int = Field(10_000, ge=100)
    batch_size: int = Field(64, ge=1)
    retrieval: RetrievalSuite = RetrievalSuite()
    sts: STSSuite = STSSuite()
    classification: ClassificationSuite = ClassificationSuite()
    clustering: ClusteringSuite = ClusteringSuite()
    geometry: GeometrySuite = GeometrySuite()
    probes: ProbeSuite = ProbeSuite()
    leakage: LeakageSuite = LeakageSuite()
    overfitting: OverfittingSuite = OverfittingSuite()
    maps: MapSuite = MapSuite()

    def enabled_checks(self) -> tuple[str, ...]:
        return tuple(name for name in CHECKS if getattr(self, name).enabled)


def _describe(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
    return f"{source}: invalid suite: " + "; ".join(parts) + ". See docs/evaluation.md for the suite format."


def load_suite(path: str | Path | None = None, *, overrides: dict | None = None) -> Suite:
    """Read a suite YAML file (None = the default suite); ``overrides`` is merged over it (top-level keys)."""
    data: dict = {}
    source = "default suite"
    if path is not None:
        file = Path(path)
        source = str(file)
        if not file.is_file():
            raise ConfigError(f"suite file {file} does not exist; pass --suite with a YAML file or omit it")
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: not valid YAML ({exc}); fix the syntax (see docs/evaluation.md)") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file}: a suite must be a YAML mapping of sections, got {type(loaded).__name__}")
        data = loaded
    if overrides:
        data = {**data, **overrides}
    try:
        return Suite.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from exc
    except ConfigError as exc:  # a bad metric string raised inside a validator
        raise ConfigError(f"{source}: {exc}") from exc


def restrict_suite(suite: Suite, *, only: str | None = None, limit: int | None = None) -> Suite:
    """``suite`` with only the checks named in ``only`` (comma-separated) enabled, and, with ``limit``, every data
    set cut to a seeded slice: ``limit`` judged queries (their documents plus ``10 * limit`` others) per retrieval
    set, at most ``limit`` items per STS set, classification train split, clustering and map."""
    if only:
        wanted = {c.strip() for c in only.split(",") if c.strip()}
        unknown = wanted - set(CHECKS)
        if unknown:
            raise ConfigError(f"--only {only!r}: unknown check(s) {', '.join(sorted(unknown))}; valid: {', '.join(CHECKS)}")
        suite = suite.model_copy(update={
            name: getattr(suite, name).model_copy(update={"enabled": name in wanted}) for name in CHECKS})
    if limit is None:
        return suite
    if limit < 20:
        raise ConfigError(f"--limit {limit}: too small for the statistics; give at least 20 (e.g. --limit 50)")
    sliced = {"sample_queries": limit, "sample_distractors": 10 * limit}
    return suite.model_copy(update={
        "retrieval": suite.retrieval.model_copy(update=sliced),
        "overfitting": suite.overfitting.model_copy(
            update={"sets": tuple(o.model_copy(update=sliced) for o in suite.overfitting.sets)}),
        "sts": suite.sts.model_copy(update={"sets": tuple(
            x.model_copy(update={"max_pairs": min(limit, x.max_pairs or limit)}) for x in suite.sts.sets)}),
        "classification": suite.classification.model_copy(
            update={"max_train": min(limit, suite.classification.max_train or limit)}),
        "clustering": suite.clustering.model_copy(update={"max_items": min(limit, suite.clustering.max_items or limit)}),
        "maps": suite.maps.model_copy(update={"sample": min(limit, suite.maps.sample)}),
    })
