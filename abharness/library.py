"""The calls a data scientist needs in a notebook, re-exported by ``import abharness`` (see docs/library.md).

    import abharness
    store = abharness.open_store("artifacts/demo/events.db")        # read-only use: never creates or migrates
    report = abharness.analyze(store, "demo-ab")
    report.to_frame()                                                # pandas DataFrame, one row per metric

The CLI commands ``analyze``, ``replay`` and ``evaluate`` are thin skins over these same calls.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from abharness.errors import ConfigError, StoreError

if TYPE_CHECKING:  # pragma: no cover
    from abharness.analysis.report import AnalysisReport
    from abharness.config import ExperimentConfig
    from abharness.evaluation.runner import EvaluationReport
    from abharness.replay.runner import ReplayReport
    from abharness.stores.base import EventStore

__all__ = ["open_store", "load_config", "analyze", "replay", "evaluate"]


def _as_url(location: str | Path) -> str:
    text = str(location).strip()
    if "://" in text:
        return text
    return "sqlite:///" + text  # a plain path: an SQLite file (relative or absolute)


def open_store(location: str | Path, *, create: bool = False) -> EventStore:
    """Open an event store: a URL (``sqlite:///events.db``, ``postgresql://...``) or the path of an SQLite file.

    By default nothing is created or changed: a missing SQLite file is an error (``StoreError`` naming the path),
    and the schema is not migrated, so opening a store to look at it never alters it. ``create=True`` creates the
    file when missing and brings the schema up to date, as the proxy does.

    Example::

        store = abharness.open_store("artifacts/demo/events.db")
        store.experiments()
    """
    from abharness.stores import open_store as _open

    url = _as_url(location)
    if url.startswith("sqlite:///") and ":memory:" not in url and not create:
        path = Path(url[len("sqlite:///"):])
        if not path.is_file():
            raise StoreError(
                f"store {str(location)!r}: no SQLite file at {str(path)!r}; point at the events database the proxy "
                "writes (sqlite:///relative.db, sqlite:////abs.db or a path), or pass create=True to make a new one"
            )
    return _open(url, migrate=create)


def load_config(path: str | Path, *, insecure_dev: bool = True) -> ExperimentConfig:
    """Read an experiment YAML (paths inside it resolve relative to the file). Secrets are not required here,
    since a notebook only reads arms, roles and weights; pass ``insecure_dev=False`` to check them as ``serve``
    does.

    Example::

        cfg = abharness.load_config("examples/experiment.yaml")
        cfg.control, cfg.treatments, cfg.ordered_weights()
    """
    from abharness.config import load_config as _load

    return _load(path, insecure_dev=insecure_dev)


def analyze(
    store: EventStore | str | Path,
    experiment: str,
    *,
    config: ExperimentConfig | str | Path | None = None,
    since: float | None = None,
    until: float | None = None,
    metrics: Iterable[str] | None = None,
    segment: str | None = None,
    **options: Any,
) -> AnalysisReport:
    """Statistics of an online experiment, with one decision (``report.decision``: ship / keep-running /
    rollback). ``store`` is an open store or a location for ``open_store``; ``options`` are the fields of
    ``abharness.analysis.AnalysisOptions`` (``alpha``, ``primary``, ``basis``, ``bootstrap_samples``, ...).

    Example::

        report = abharness.analyze("artifacts/demo/events.db", "demo-ab", bootstrap_samples=0)
        report.decision, report.to_frame()
    """
    from abharness.analysis import AnalysisOptions
    from abharness.analysis import analyze as _analyze

    cfg = load_config(config) if isinstance(config, (str, Path)) else config
    try:
        opts = AnalysisOptions(**options)
    except TypeError as exc:
        raise ConfigError(f"analyze: {exc}; valid options are the fields of abharness.analysis.AnalysisOptions") from None
    with _opened(store) as st:
        return _analyze(st, experiment, config=cfg, since=since, until=until, metrics=metrics, segment=segment,
                        options=opts)


def replay(
    store: EventStore | str | Path,
    experiment: str,
    *,
    config: ExperimentConfig | str | Path,
    qrels: str | Path | None = None,
    sample: int | None = None,
    since: float | None = None,
    until: float | None = None,
    allow_new_versions: bool = False,
    seed: int = 0,
) -> ReplayReport:
    """Re-run the logged queries of ``experiment`` through the control and first treatment arm of ``config``
    (their indexes and models), and set the offline deltas beside the online ones. ``qrels``: a BEIR folder or
    its ``qrels/<split>.tsv``, for recall/MRR/nDCG.

    Example::

        report = abharness.replay("artifacts/demo/events.db", "demo-ab", config="examples/experiment.yaml")
        report.to_frame()
    """
    from abharness.backends.factory import build_backends
    from abharness.replay import replay as _replay
    cfg = load_config(config) if isinstance(config, (str, Path)) else config
    q, ids = load_replay_qrels(qrels) if qrels is not None else (None, None)
    with _opened(store) as st:
        backends = build_backends(cfg)
        try:
            return _replay(st, experiment, backends, control=cfg.control, treatment=cfg.treatments[0], since=since,
                           until=until, sample=sample, qrels=q, query_ids=ids, allow_new_versions=allow_new_versions,
                           seed=seed)
        finally:
            for backend in backends.values():
                backend.close()


def evaluate(
    baseline: str,
    candidate: str,
    *,
    data_root: str | Path,
    suite: str | Path | None = None,
    out: str | Path | None = None,
    only: str | None = None,
    limit: int | None = None,
    progress: bool = False,
) -> EvaluationReport:
    """Offline before/after comparison of two models ('minilm' or model directories) on the data sets under
    ``data_root`` (the folder holding scifact/, cranfield/, ...). ``only`` picks checks ('retrieval,sts');
    ``limit`` evaluates a slice and is recorded in the report. ``out`` also writes report.json/html.

    Example::

        report = abharness.evaluate("minilm", "artifacts/models/scifact-ft", data_root="../shared/data",
                                    only="retrieval", limit=50)
        report.to_frame()
    """
    from abharness.encoders import check_model_spec
    from abharness.evaluation import evaluate as _evaluate
    from abharness.evaluation import load_suite, restrict_suite

    check_model_spec(baseline, option="baseline")
    check_model_spec(candidate, option="candidate")
    suite_obj = restrict_suite(load_suite(suite), only=only, limit=limit)
    return _evaluate(baseline, candidate, suite_obj, out, data_dir=data_root, progress=progress,
                     render_html=out is not None, limit=limit)


def load_replay_qrels(path: str | Path) -> tuple[dict[str, dict[str, int]], dict[str, str]]:
    """Qrels for replay: a BEIR folder (test split) or its ``qrels/<split>.tsv``; returns (qrels, text -> id)."""
    from abharness.data import load_qrels, load_queries

    p = Path(path)
    if p.is_dir():
        root, split = p, "test"
    elif p.is_file() and p.parent.name == "qrels":
        root, split = p.parent.parent, p.stem
    else:
        raise ConfigError(f"--qrels {str(path)!r}: expected a BEIR directory (queries.jsonl + qrels/) or its "
                          "qrels/<split>.tsv file, e.g. --qrels ../shared/data/scifact/qrels/test.tsv")
    queries = load_queries(root)
    qrels, _ = load_qrels(root, split)
    return qrels, {text: qid for qid, text in queries.items()}


class _opened:
    """Context manager: use an open store as is, or open (and afterwards close) one from a location."""

    def __init__(self, store: Any) -> None:
        self._given = store
        self._own = isinstance(store, (str, Path))
        self.store: Any = None

    def __enter__(self) -> Any:
        self.store = open_store(self._given) if self._own else self._given
        return self.store

    def __exit__(self, *exc: object) -> None:
        if self._own and self.store is not None:
            self.store.close()
