"""The end-to-end demo: one command from data to an agreed (or honestly disagreeing) verdict.

Stages (artifacts are reused when present and still valid; each stage shows progress):

1. data: SciFact from ``--data-root`` (``--quick``: a seeded slice written under ``<out>/quick-data``);
2. fine-tune the candidate on the train split (reused when ``<model>/abharness_manifest.json`` exists);
3. build both FAISS indexes (reused when their manifest names the same model fingerprint); export each model to
   ONNX for its arm's queries (``abharness.demo.fast``: agreement-gated, reused by fingerprint);
4. offline evaluation report (``abharness.evaluation.evaluate``; reused when the models are unchanged);
5. both arms rank the test queries; interleaving vs A/B sensitivity by vectorised simulation;
6. the proxy (real uvicorn on loopback) with a 50/50 A/B split; simulated users; ``analyze``;
7. replay of the logged A/B queries (with the test qrels);
8. an interleaving run of the same proxy; ``analyze``;
9. one HTML index linking every report, ``summary.json``, and a terminal summary: do the offline, replay, A/B and
   interleaving verdicts agree, and how much traffic did each need?
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from abharness.demo.fast import fast_encoder
from abharness.errors import DataError

__all__ = ["DemoOptions", "run_demo", "write_quick_data"]

BASELINE_SPEC = "minilm"


@dataclass(frozen=True)
class DemoOptions:
    """What to run. Sizes of the live runs are derived from the sensitivity study, clamped to these bounds."""

    data: Path
    out: Path
    quick: bool = False
    artifacts: Path | None = None
    seed: int = 0
    click_model: str = "dbn"
    preset: str = "navigational"
    queries_per_user: int = 10
    ab_searches: tuple[int, int] = (2_000, 12_000)
    interleave_searches: tuple[int, int] = (1_000, 6_000)
    concurrency: int = 8
    k: int = 10
    sensitivity_replicates: int = 200

    @classmethod
    def quick_defaults(cls, data: Path, out: Path, **kw: Any) -> DemoOptions:
        """A tiny configuration: small slice, small live runs, few replicates (CI)."""
        base = dict(quick=True, ab_searches=(300, 600), interleave_searches=(300, 600), sensitivity_replicates=60,
                    concurrency=4)
        base.update(kw)
        return cls(data=data, out=out, **base)


@dataclass
class Stage:
    name: str
    seconds: float = 0.0
    reused: bool = False
    note: str = ""


@dataclass
class DemoState:
    """What the stages produced (filled in as they run)."""

    stages: list[Stage] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)


def _stage(state: DemoState, console: Console, i: int, n: int, name: str):
    class _Ctx:
        def __enter__(self) -> Stage:
            console.rule(f"[bold]{i}/{n} {name}")
            self.t0 = time.perf_counter()
            self.stage = Stage(name)
            return self.stage

        def __exit__(self, *exc: Any) -> None:
            self.stage.seconds = round(time.perf_counter() - self.t0, 1)
            state.stages.append(self.stage)
            if exc[0] is None:
                extra = " (reused)" if self.stage.reused else ""
                console.print(f"[green]done[/] {name} in {self.stage.seconds:.1f} s{extra} {self.stage.note}")

    return _Ctx()


# ----------------------------------------------------------------------------------------------------- data
def write_quick_data(scifact: Path, out: Path, *, n_test: int = 30, n_train: int = 64, n_distractors: int = 200,
                     seed: int = 0) -> Path:
    """Write a seeded SciFact slice (train + test queries, their judged documents, distractors) in BEIR layout
    under ``out/scifact``; return ``out`` (a data root the evaluation can read). Idempotent."""
    from abharness.data import load_beir, slice_dataset

    target = out / "scifact"
    if (target / "qrels" / "test.tsv").is_file() and (target / "qrels" / "train.tsv").is_file():
        return out
    test = slice_dataset(load_beir(scifact, "test"), n_test, n_distractors, seed)
    train = slice_dataset(load_beir(scifact, "train"), n_train, 0, seed)
    corpus = {**test.corpus, **train.corpus}
    (target / "qrels").mkdir(parents=True, exist_ok=True)
    with (target / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for d in sorted(corpus):
            doc = corpus[d]
            fh.write(json.dumps({"_id": d, "title": doc.title, "text": doc.text}, ensure_ascii=False) + "\n")
    with (target / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for q, text in sorted({**test.queries, **train.queries}.items()):
            fh.write(json.dumps({"_id": q, "text": text}, ensure_ascii=False) + "\n")
    for split, ds in (("test", test), ("train", train)):
        with (target / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as fh:
            fh.write("query-id\tcorpus-id\tscore\n")
            for q in sorted(ds.qrels):
                for d, g in sorted(ds.qrels[q].items()):
                    fh.write(f"{q}\t{d}\t{g}\n")
    return out


# ----------------------------------------------------------------------------------------------- artifacts
def _finetune(data_dir: Path, model_dir: Path, quick: bool, seed: int, stage: Stage) -> None:
    if (model_dir / "abharness_manifest.json").is_file():
        stage.reused = True
        return
    from abharness.finetune import FinetuneParams, finetune

    params = FinetuneParams(max_pairs=64, max_seq_length=96, batch_size=16) if quick else FinetuneParams()
    finetune(data_dir / "scifact", base=BASELINE_SPEC, out_dir=model_dir, split="train", params=params, seed=seed,
             overwrite=True, progress=True)


def _index(encoder: Any, dataset: Any, index_dir: Path, stage: Stage) -> None:
    from abharness.errors import AbharnessError
    from abharness.index.faiss_index import build_index, load_index

    if (index_dir / "manifest.json").is_file():
        try:
            idx = load_index(index_dir, encoder)
            if idx.manifest.corpus_hash == dataset.corpus_hash:
                stage.reused = True
                return
        except AbharnessError:
            pass
    build_index(encoder, dataset, index_dir, overwrite=True, progress=True)


def _evaluation(data_dir: Path, model_dir: Path, out: Path, quick: bool, encoders: tuple[Any, Any],
                stage: Stage) -> dict[str, Any]:
    """The offline evaluation with the (torch) encoders already loaded for the indexes, so neither model is loaded
    twice and the SciFact corpus embeddings come from the index builds' cache entries; the candidate's fine-tuning
    manifest is read from the model directory."""
    from abharness.evaluation import evaluate, load_suite
    from abharness.finetune import read_manifest

    fingerprints = (encoders[0].fingerprint, encoders[1].fingerprint)

    report_file = out / "report.json"
    if report_file.is_file():
        old = json.loads(report_file.read_text(encoding="utf-8"))
        same = (old.get("baseline", {}).get("fingerprint"), old.get("candidate", {}).get("fingerprint")) == fingerprints
        if same and old.get("suite", {}).get("name") == ("demo-quick" if quick else "default"):
            stage.reused = True
            return old
    if quick:
        off = {"enabled": False}
        suite = load_suite(None, overrides={
            "name": "demo-quick", "n_resamples": 1000, "sts": off, "classification": off, "clustering": off,
            "geometry": off, "probes": off, "overfitting": off, "maps": off,
        })
    else:
        suite = load_suite(None)
    report = evaluate(encoders[0], encoders[1], suite, out, data_dir=data_dir, progress=True,
                      manifest=read_manifest(str(model_dir)))
    return json.loads(json.dumps(report.to_dict(), default=str))


# ------------------------------------------------------------------------------------------------ proxy runs
def _experiment_config(exp_id: str, mode: str, store_url: str, arms: dict[str, tuple[Path, str]], k: int):
    from abharness.config import parse_config

    (ctrl, (ci, cm)), (trt, (ti, tm)) = list(arms.items())
    return parse_config({
        "experiment_id": exp_id, "salt": f"{exp_id}-salt", "unit": "user", "mode": mode, "k": k,
        "arms": [{"name": ctrl, "role": "control", "backend": {"kind": "local", "index": str(ci), "model": cm}},
                 {"name": trt, "role": "treatment", "backend": {"kind": "local", "index": str(ti), "model": tm}}],
        "weights": {ctrl: 0.5, trt: 0.5}, "store_url": store_url,
        "admin_token": secrets.token_urlsafe(24), "token_secret": secrets.token_urlsafe(24),
        "timeouts": {"control_s": 30.0, "treatment_s": 30.0, "shadow_s": 30.0},
    }, source=f"demo {mode} experiment")


def _live_run(cfg: Any, backends: dict, pool: Any, model: Any, searches: int, opts: DemoOptions, seed: int,
              label: str) -> Any:
    """Serve ``cfg`` with real uvicorn on loopback (backends injected, so models load once) and simulate users."""
    from prometheus_client import CollectorRegistry

    from abharness.api.app import create_app
    from abharness.simulate import plan_traffic, run_simulation
    from abharness.simulate.live import serve_in_thread

    users = max(2, -(-searches // opts.queries_per_user))
    plans = plan_traffic(pool, users=users, queries_per_user=opts.queries_per_user, sessions_per_user=3,
                         repeat_prob=0.3, seed=seed)
    app = create_app(cfg, registry=CollectorRegistry(), backends=backends)
    with serve_in_thread(app) as url:
        result = run_simulation(url, plans, pool, model, k=opts.k, concurrency=opts.concurrency, seed=seed,
                                description=f"{label}: {users} users x {opts.queries_per_user} searches")
    return result


def _clamp(value: float, bounds: tuple[int, int]) -> int:
    return int(min(max(value, bounds[0]), bounds[1]))


def run_demo(opts: DemoOptions, console: Console | None = None) -> dict[str, Any]:
    """Run every stage (module docstring); return the summary dict (also written to ``<out>/summary.json``)."""
    from abharness.backends.local import open_local_backend
    from abharness.backends.retrieval import search
    from abharness.core.clickmodels import make_click_model
    from abharness.data import load_beir
    from abharness.demo.summary import render_summary, verdicts, write_index
    from abharness.encoders import load_encoder
    from abharness.replay import replay
    from abharness.replay.render import write_replay_outputs
    from abharness.simulate import QueryPool
    from abharness.simulate.sensitivity import prepare_arm_lists, sensitivity_study
    from abharness.stores import open_store

    con = console or Console()
    t_start = time.perf_counter()
    state = DemoState()
    out = opts.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    scifact = opts.data / "scifact"
    if not (scifact / "queries.jsonl").is_file():
        raise DataError(f"--data-root {str(opts.data)!r}: no scifact/queries.jsonl there; pass the folder holding scifact/ "
                        "(e.g. --data-root ../shared/data)")
    n = 9
    with _stage(state, con, 1, n, "data") as st:
        if opts.quick:
            data_dir = write_quick_data(scifact, out / "quick-data", seed=opts.seed)
            st.note = "(quick slice)"
        else:
            data_dir = opts.data
        test = load_beir(data_dir / "scifact", "test")
        st.note += f" {len(test.queries)} test queries, {len(test.corpus)} documents"
    art = (opts.artifacts or (out / "artifacts" if opts.quick else Path("artifacts"))).resolve()
    model_dir = art / "models" / ("scifact-ft-quick" if opts.quick else "scifact-ft")
    idx_base = art / "indexes" / ("scifact-quick-minilm" if opts.quick else "scifact-minilm")
    idx_ft = art / "indexes" / ("scifact-quick-ft" if opts.quick else "scifact-ft")
    with _stage(state, con, 2, n, "fine-tune the candidate") as st:
        _finetune(data_dir, model_dir, opts.quick, opts.seed, st)
        st.note = str(model_dir)
    onnx_base = art / "onnx" / ("scifact-quick-minilm" if opts.quick else "scifact-minilm")
    onnx_ft = art / "onnx" / ("scifact-quick-ft" if opts.quick else "scifact-ft")
    with _stage(state, con, 3, n, "build both indexes; export the fast (ONNX) query encoders") as st:
        enc_base, enc_ft = load_encoder(BASELINE_SPEC), load_encoder(str(model_dir))
        sub = [Stage("a"), Stage("b")]
        _index(enc_base, test, idx_base, sub[0])
        _index(enc_ft, test, idx_ft, sub[1])
        fast_base = fast_encoder(BASELINE_SPEC, enc_base, data_dir / "scifact", onnx_base)
        fast_ft = fast_encoder(str(model_dir), enc_ft, data_dir / "scifact", onnx_ft)
        con.print(f"  baseline: {fast_base.note}\n  finetuned: {fast_ft.note}")
        st.reused = sub[0].reused and sub[1].reused and "reused" in fast_base.note and "reused" in fast_ft.note
        state.facts["encoders"] = {"baseline": fast_base.note, "finetuned": fast_ft.note}
    with _stage(state, con, 4, n, "offline evaluation") as st:
        evaluation = _evaluation(data_dir, model_dir, out / "evaluation", opts.quick, (enc_base, enc_ft), st)
        state.paths["evaluation"] = "evaluation/report.html"
    del enc_base, enc_ft
    arms = {"baseline": (idx_base, fast_base.query_spec), "finetuned": (idx_ft, fast_ft.query_spec)}
    backends = {name: open_local_backend(i, m) for name, (i, m) in arms.items()}
    try:
        pool = QueryPool.from_dataset(test, zipf_s=1.0, seed=opts.seed)
        model = make_click_model(opts.click_model, preset=opts.preset, max_grade=pool.max_grade)
        with _stage(state, con, 5, n, "rank the test queries; interleaving vs A/B sensitivity") as st:
            texts = list(pool.texts)
            rank = {a: dict(zip(pool.query_ids, ([h.doc_id for h in hs] for hs in
                                                 search(b, texts, opts.k, progress=True))))
                    for a, b in backends.items()}
            lists = prepare_arm_lists(pool, rank["baseline"], rank["finetuned"], k=opts.k,
                                      names=("baseline", "finetuned"))
            sens = sensitivity_study(pool, lists, model, impressions_per_unit=opts.queries_per_user,
                                     replicates=opts.sensitivity_replicates, seed=opts.seed,
                                     pilot_units=20_000 if opts.quick else 100_000,
                                     max_simulated_impressions=5_000_000 if opts.quick else 60_000_000,
                                     on_step=lambda s: con.print(f"  {s}"))
            st.note = (f"A/B (CTR) needs {sens.primary_ab.impressions_needed:,} impressions, interleaving "
                       f"{sens.interleaving.impressions_needed:,} (ratio {sens.ratio:.1f})")
        store_path = out / "events.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{store_path}{suffix}").unlink(missing_ok=True)
        store_url = f"sqlite:///{store_path}"
        ab_n = _clamp(1.2 * sens.primary_ab.impressions_needed, opts.ab_searches)
        with _stage(state, con, 6, n, f"A/B run through the proxy (50/50, {ab_n:,} searches) and analysis") as st:
            cfg_ab = _experiment_config("demo-ab", "ab", store_url, arms, opts.k)
            sim_ab = _live_run(cfg_ab, backends, pool, model, ab_n, opts, opts.seed + 1, "A/B")
            ab_report = _analyze_logged(store_url, cfg_ab)
            st.note = f"decision: {ab_report.decision}; {sim_ab.searches_per_second:.0f} searches/s"
        with _stage(state, con, 7, n, "replay of the logged A/B queries") as st:
            store = open_store(store_url)
            try:
                by_text = {t: q for q, t in test.queries.items()}
                rep = replay(store, "demo-ab", backends, control="baseline", treatment="finetuned",
                             qrels=test.qrels, query_ids=by_text, seed=opts.seed,
                             progress=lambda s: con.print(f"  {s}"))
            finally:
                store.close()
            write_replay_outputs(rep, out / "replay")
            state.paths["replay"] = "replay/replay.html"
        il_n = _clamp(1.5 * sens.interleaving.impressions_needed, opts.interleave_searches)
        with _stage(state, con, 8, n, f"interleaving run through the proxy ({il_n:,} searches) and analysis") as st:
            cfg_il = _experiment_config("demo-interleave", "interleave", store_url, arms, opts.k)
            sim_il = _live_run(cfg_il, backends, pool, model, il_n, opts, opts.seed + 2, "interleaving")
            il_report = _analyze_logged(store_url, cfg_il)
            il = il_report.interleaving
            st.note = "" if il is None else f"preference {il.preference:+.4f}, p={il.p_value:.3g}"
    finally:
        for b in backends.values():
            b.close()
    with _stage(state, con, 9, n, "report") as st:
        summary = verdicts(evaluation=evaluation, ab=ab_report, interleave=il_report, replay=rep, sensitivity=sens,
                           sim_ab=sim_ab, sim_il=sim_il)
        summary["stages"] = [s.__dict__ for s in state.stages]
        summary["wall_seconds"] = round(time.perf_counter() - t_start, 1)
        summary["quick"] = opts.quick
        summary["encoders"] = state.facts.get("encoders", {})
        summary["artifacts"] = {"model": str(model_dir), "index_baseline": str(idx_base), "index_finetuned": str(idx_ft),
                                "events": str(store_path)}
        for name, rpt in (("analysis-ab.json", ab_report), ("analysis-interleave.json", il_report)):
            (out / name).write_text(json.dumps(rpt.to_dict(), indent=2, default=str), encoding="utf-8")
        (out / "sensitivity.json").write_text(json.dumps(sens.to_dict(), indent=2, default=str), encoding="utf-8")
        _results_pages(out, ab_report, il_report, evaluation, rep, state.paths)
        write_index(summary, out, state.paths)
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    summary["stages"] = [s.__dict__ for s in state.stages]
    summary["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    render_summary(summary, con, out)
    return summary


def _results_pages(out: Path, ab: Any, il: Any, evaluation: dict[str, Any], rep: Any, paths: dict[str, str]) -> None:
    """The online results pages (same template as `abharness analyze --html`): the A/B with the offline evaluation's
    and the replay's verdicts beside it, and the interleaving run."""
    from abharness.report.results import offline_verdicts, write_results_html

    offline = offline_verdicts(evaluation=evaluation, replay=rep.to_dict())
    write_results_html(ab.to_dict(), out / "ab", offline=offline, generated_at=time.time())
    write_results_html(il.to_dict(), out / "interleave", generated_at=time.time())
    paths["ab"], paths["interleave"] = "ab/index.html", "interleave/index.html"


def _analyze_logged(store_url: str, cfg: Any) -> Any:
    """Analyse the experiment of ``cfg`` from the demo's event log (the same use case as `abharness analyze`)."""
    from abharness.analysis import analyze
    from abharness.stores import open_store

    store = open_store(store_url)
    try:
        return analyze(store, cfg.experiment_id, config=cfg)
    finally:
        store.close()
