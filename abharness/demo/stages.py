"""The demo's stages, one function each. Every stage returns a :class:`Done` (its value, a one-line note, and
whether it reused an artefact); :class:`StageRunner` prints the rule, times the stage and records it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from rich.console import Console

from abharness.demo.fast import fast_encoder
from abharness.demo.live import analyze_logged, experiment_config, live_run
from abharness.demo.quickdata import write_quick_data

if TYPE_CHECKING:
    from abharness.analysis import AnalysisReport
    from abharness.backends.base import SearchBackend
    from abharness.config import ExperimentConfig
    from abharness.data.types import RetrievalDataset
    from abharness.replay.runner import ReplayReport
    from abharness.simulate.driver import SimulationResult
    from abharness.simulate.sensitivity import SensitivityResult

__all__ = [
    "BASELINE_SPEC",
    "Artifacts",
    "Done",
    "Encoders",
    "LiveRun",
    "StageRecord",
    "StageRunner",
    "ab_run",
    "build_indexes",
    "finetune_candidate",
    "interleaving_run",
    "offline_evaluation",
    "open_arms",
    "prepare_data",
    "replay_ab",
    "sensitivity",
]

BASELINE_SPEC = "minilm"
T = TypeVar("T")


@dataclass(frozen=True)
class Done(Generic[T]):
    """What a stage produced, a one-line note for the terminal and the stage table, and whether it was reused."""

    value: T
    note: str = ""
    reused: bool = False


@dataclass(frozen=True)
class StageRecord:
    """One finished stage, as ``summary.json`` and the HTML index list it."""

    name: str
    seconds: float
    reused: bool
    note: str


class StageRunner:
    """Runs stage functions in order: a numbered rule before, the time and note after; keeps the records."""

    def __init__(self, console: Console, total: int) -> None:
        self.console = console
        self.total = total
        self.records: list[StageRecord] = []

    def run(self, name: str, stage: Callable[..., Done[T]], *args: Any, **kwargs: Any) -> T:
        self.console.rule(f"[bold]{len(self.records) + 1}/{self.total} {name}")
        t0 = time.perf_counter()
        done = stage(*args, **kwargs)
        record = StageRecord(name, round(time.perf_counter() - t0, 1), done.reused, done.note)
        self.records.append(record)
        extra = " (reused)" if record.reused else ""
        self.console.print(f"[green]done[/] {name} in {record.seconds:.1f} s{extra} {record.note}")
        return done.value


@dataclass(frozen=True)
class Artifacts:
    """Where the candidate model, both ONNX exports and both indexes are built or reused."""

    model: Path
    index_baseline: Path
    index_finetuned: Path
    onnx_baseline: Path
    onnx_finetuned: Path

    @classmethod
    def under(cls, root: Path, *, quick: bool) -> Artifacts:
        q = "-quick" if quick else ""
        return cls(root / "models" / f"scifact-ft{q}", root / "indexes" / f"scifact{q}-minilm",
                   root / "indexes" / f"scifact{q}-ft", root / "onnx" / f"scifact{q}-minilm",
                   root / "onnx" / f"scifact{q}-ft")


@dataclass(frozen=True)
class Encoders:
    """Both arms' torch encoders (for the indexes and the evaluation), the model spec each arm serves queries with
    (its ONNX export where that passed the agreement gate), and one line per arm saying which and why."""

    baseline: Any
    finetuned: Any
    query_specs: tuple[str, str]
    notes: dict[str, str]

    def arms(self, art: Artifacts) -> dict[str, tuple[Path, str]]:
        """Arm name -> (index, query model spec), control first."""
        return {"baseline": (art.index_baseline, self.query_specs[0]),
                "finetuned": (art.index_finetuned, self.query_specs[1])}


@dataclass(frozen=True)
class LiveRun:
    """A run of the proxy: its experiment config, what the simulated users did, and the analysis of the log."""

    config: ExperimentConfig
    simulation: SimulationResult
    report: AnalysisReport


# 1 ------------------------------------------------------------------------------------------------------ data
def prepare_data(data_root: Path, out: Path, *, quick: bool, seed: int) -> Done[tuple[Path, RetrievalDataset]]:
    """The data root the other stages read (a seeded slice under ``out/quick-data`` with ``quick``) and its
    SciFact test split."""
    from abharness.data import load_beir

    data_dir = write_quick_data(data_root / "scifact", out / "quick-data", seed=seed) if quick else data_root
    test = load_beir(data_dir / "scifact", "test")
    note = ("(quick slice) " if quick else "") + f"{len(test.queries)} test queries, {len(test.corpus)} documents"
    return Done((data_dir, test), note)


# 2 -------------------------------------------------------------------------------------------------- finetune
def finetune_candidate(data_dir: Path, model_dir: Path, *, quick: bool, seed: int) -> Done[Path]:
    """Fine-tune the candidate on the train split, unless ``model_dir`` already holds one (its manifest)."""
    if (model_dir / "abharness_manifest.json").is_file():
        return Done(model_dir, str(model_dir), reused=True)
    from abharness.finetune import FinetuneParams, finetune

    params = FinetuneParams(max_pairs=64, max_seq_length=96, batch_size=16) if quick else FinetuneParams()
    finetune(data_dir / "scifact", base=BASELINE_SPEC, out_dir=model_dir, split="train", params=params, seed=seed,
             overwrite=True, progress=True)
    return Done(model_dir, str(model_dir))


# 3 --------------------------------------------------------------------------------------------------- indexes
def _index_valid(encoder: Any, dataset: RetrievalDataset, index_dir: Path) -> bool:
    """True when ``index_dir`` holds a valid index of this model over this corpus."""
    from abharness.errors import AbharnessError
    from abharness.index.faiss_index import load_index

    if (index_dir / "manifest.json").is_file():
        try:
            return load_index(index_dir, encoder).manifest.corpus_hash == dataset.corpus_hash
        except AbharnessError:
            pass  # another model or a damaged index: rebuild it
    return False


def _ensure_indexes(pairs: list[tuple[Any, Path]], dataset: RetrievalDataset) -> list[bool]:
    """Build each (encoder, index dir) index unless a valid one is there; True where reused. The corpus
    embeddings of the indexes to build are encoded first, side by side (``encode_cached_side_by_side``: one torch
    thread per model on 2 CPUs), into the cache entries ``build_index`` then reads."""
    from abharness.encoders.cache import encode_cached_side_by_side
    from abharness.index.faiss_index import build_index, corpus_cache_job

    reused = [_index_valid(encoder, dataset, index_dir) for encoder, index_dir in pairs]
    encode_cached_side_by_side([corpus_cache_job(encoder, dataset)
                                for (encoder, _), ok in zip(pairs, reused) if not ok])
    for (encoder, index_dir), ok in zip(pairs, reused):
        if not ok:
            build_index(encoder, dataset, index_dir, overwrite=True, progress=True)
    return reused


def build_indexes(data_dir: Path, test: RetrievalDataset, art: Artifacts, *, console: Console) -> Done[Encoders]:
    """Both arms' FAISS indexes over the test corpus with the torch models, then each model exported to ONNX for
    its arm's queries (``abharness.demo.fast``: agreement-gated against the cached corpus embeddings, reused by
    fingerprint). Reused when both indexes and both exports were."""
    from abharness.encoders import load_encoder

    enc_base, enc_ft = load_encoder(BASELINE_SPEC), load_encoder(str(art.model))
    reused = _ensure_indexes([(enc_base, art.index_baseline), (enc_ft, art.index_finetuned)], test)
    fast_base = fast_encoder(BASELINE_SPEC, enc_base, data_dir / "scifact", art.onnx_baseline)
    fast_ft = fast_encoder(str(art.model), enc_ft, data_dir / "scifact", art.onnx_finetuned)
    console.print(f"  baseline: {fast_base.note}\n  finetuned: {fast_ft.note}")
    reused += ["reused" in fast_base.note, "reused" in fast_ft.note]
    enc = Encoders(fast_base.encoder, fast_ft.encoder, (fast_base.query_spec, fast_ft.query_spec),
                   {"baseline": fast_base.note, "finetuned": fast_ft.note})
    return Done(enc, reused=all(reused))


# 4 ------------------------------------------------------------------------------------------------ evaluation
def offline_evaluation(data_dir: Path, model_dir: Path, out: Path, *, quick: bool,
                       encoders: Encoders) -> Done[dict[str, Any]]:
    """The offline evaluation report (``abharness.evaluation.evaluate``), reused when the models are unchanged.

    It runs with the (torch) encoders already loaded for the indexes, so neither model is loaded twice and the
    SciFact corpus embeddings come from the index builds' cache entries; the candidate's fine-tuning manifest is
    read from the model directory."""
    from abharness.evaluation import evaluate, load_suite
    from abharness.finetune import read_manifest

    fingerprints = (encoders.baseline.fingerprint, encoders.finetuned.fingerprint)

    suite_name = "demo-quick" if quick else "default"
    report_file = out / "report.json"
    if report_file.is_file():
        old = json.loads(report_file.read_text(encoding="utf-8"))
        same = (old.get("baseline", {}).get("fingerprint"), old.get("candidate", {}).get("fingerprint")) == fingerprints
        if same and old.get("suite", {}).get("name") == suite_name:
            return Done(old, reused=True)
    if quick:
        off = {"enabled": False}
        suite = load_suite(None, overrides={
            "name": suite_name, "n_resamples": 1000, "sts": off, "classification": off, "clustering": off,
            "geometry": off, "probes": off, "overfitting": off, "maps": off,
        })
    else:
        suite = load_suite(None)
    report = evaluate(encoders.baseline, encoders.finetuned, suite, out, data_dir=data_dir, progress=True,
                      manifest=read_manifest(str(model_dir)))
    return Done(json.loads(json.dumps(report.to_dict(), default=str)))


# 5 ----------------------------------------------------------------------------------------------- sensitivity
@contextmanager
def open_arms(arms: Mapping[str, tuple[Path, str]]) -> Iterator[dict[str, SearchBackend]]:
    """Both arms' local backends (encoder + index loaded once, shared by every live stage), closed on exit."""
    from abharness.backends.local import open_local_backend

    backends: dict[str, SearchBackend] = {}
    try:
        for name, (index, model) in arms.items():
            backends[name] = open_local_backend(index, model)
        yield backends
    finally:
        for b in backends.values():
            b.close()


def sensitivity(backends: Mapping[str, SearchBackend], pool: Any, click_model: Any, *, k: int,
                queries_per_user: int, replicates: int, quick: bool, seed: int,
                console: Console) -> Done[SensitivityResult]:
    """Both arms rank the pool's queries; impressions each method needs for 80 % power, by simulation."""
    from abharness.backends.retrieval import search
    from abharness.simulate.sensitivity import prepare_arm_lists, sensitivity_study

    texts = list(pool.texts)
    rank = {a: dict(zip(pool.query_ids, ([h.doc_id for h in hs] for hs in search(b, texts, k, progress=True))))
            for a, b in backends.items()}
    lists = prepare_arm_lists(pool, rank["baseline"], rank["finetuned"], k=k, names=("baseline", "finetuned"))
    sens = sensitivity_study(pool, lists, click_model, impressions_per_unit=queries_per_user, replicates=replicates,
                             seed=seed, pilot_units=20_000 if quick else 100_000,
                             max_simulated_impressions=5_000_000 if quick else 60_000_000,
                             on_step=lambda s: console.print(f"  {s}"))
    return Done(sens, f"A/B (CTR) needs {sens.primary_ab.impressions_needed:,} impressions, interleaving "
                      f"{sens.interleaving.impressions_needed:,} (ratio {sens.ratio:.1f})")


# 6, 8 ------------------------------------------------------------------------------------------- live runs
def _live(mode: str, exp_id: str, store_url: str, arms: Mapping[str, tuple[Path, str]],
          backends: Mapping[str, SearchBackend], pool: Any, click_model: Any, searches: int, *, k: int,
          queries_per_user: int, concurrency: int, seed: int, label: str) -> LiveRun:
    cfg = experiment_config(exp_id, mode, store_url, dict(arms), k)
    sim = live_run(cfg, dict(backends), pool, click_model, searches, k=k, queries_per_user=queries_per_user,
                   concurrency=concurrency, seed=seed, label=label)
    return LiveRun(cfg, sim, analyze_logged(store_url, cfg))


def ab_run(store_url: str, arms: Mapping[str, tuple[Path, str]], backends: Mapping[str, SearchBackend], pool: Any,
           click_model: Any, searches: int, **live: Any) -> Done[LiveRun]:
    """A 50/50 A/B experiment through the proxy with simulated users, then ``analyze``."""
    run = _live("ab", "demo-ab", store_url, arms, backends, pool, click_model, searches, label="A/B", **live)
    return Done(run, f"decision: {run.report.decision}; {run.simulation.searches_per_second:.0f} searches/s")


def interleaving_run(store_url: str, arms: Mapping[str, tuple[Path, str]], backends: Mapping[str, SearchBackend],
                     pool: Any, click_model: Any, searches: int, **live: Any) -> Done[LiveRun]:
    """A team-draft interleaving experiment through the same proxy, then ``analyze``."""
    run = _live("interleave", "demo-interleave", store_url, arms, backends, pool, click_model, searches,
                label="interleaving", **live)
    il = run.report.interleaving
    return Done(run, "" if il is None else f"preference {il.preference:+.4f}, p={il.p_value:.3g}")


# 7 ---------------------------------------------------------------------------------------------------- replay
def replay_ab(store_url: str, backends: Mapping[str, SearchBackend], test: RetrievalDataset, out: Path, *,
              seed: int, console: Console) -> Done[ReplayReport]:
    """Replay the logged A/B queries through both arms (scored with the test qrels); write ``out/replay``."""
    from abharness.replay import replay
    from abharness.replay.render import write_replay_outputs
    from abharness.stores import open_store

    store = open_store(store_url)
    try:
        by_text = {t: q for q, t in test.queries.items()}
        rep = replay(store, "demo-ab", dict(backends), control="baseline", treatment="finetuned", qrels=test.qrels,
                     query_ids=by_text, seed=seed, progress=lambda s: console.print(f"  {s}"))
    finally:
        store.close()
    write_replay_outputs(rep, out / "replay")
    return Done(rep)
