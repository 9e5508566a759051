"""The end-to-end demo: one command from data to an agreed (or honestly disagreeing) verdict.

Stages (one function each in ``abharness.demo.stages``; artefacts are reused when present and still valid; each
stage shows progress):

1. data: SciFact from ``--data-root`` (``--quick``: a seeded slice written under ``<out>/quick-data``);
2. fine-tune the candidate on the train split (reused when ``<model>/abharness_manifest.json`` exists);
3. build both FAISS indexes (reused when their manifest names the same model fingerprint); export each model to
   ONNX for its arm's queries (``abharness.demo.fast``: agreement-gated, reused by fingerprint);
4. offline evaluation report (``abharness.evaluation.evaluate``; reused when the models are unchanged);
5. both arms rank the test queries; interleaving vs A/B sensitivity by vectorised simulation;
6. the proxy (real uvicorn on loopback) with a 50/50 A/B split; simulated users; ``analyze``;
7. replay of the logged A/B queries (with the test qrels);
8. an interleaving run of the same proxy; ``analyze``;
9. report: both analyses and the sensitivity study as JSON, the A/B and interleaving results pages, and one
   HTML index linking every report.

Then ``summary.json`` (written once, with all nine stages) and a terminal summary: do the offline, replay, A/B
and interleaving verdicts agree, and how much traffic did each need?
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from abharness.demo import stages as s
from abharness.demo.live import fresh_event_log
from abharness.demo.quickdata import write_quick_data
from abharness.demo.summary import render_summary, summary_dict, verdicts, write_reports
from abharness.errors import DataError

__all__ = ["DemoOptions", "run_demo", "write_quick_data"]

N_STAGES = 9


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
        base: dict[str, Any] = {"quick": True, "ab_searches": (300, 600), "interleave_searches": (300, 600),
                                "sensitivity_replicates": 60, "concurrency": 4}
        base.update(kw)
        return cls(data=data, out=out, **base)

    def artifacts_root(self, out: Path) -> Path:
        return (self.artifacts or (out / "artifacts" if self.quick else Path("artifacts"))).resolve()


def _clamp(value: float, bounds: tuple[int, int]) -> int:
    return int(min(max(value, bounds[0]), bounds[1]))


def run_demo(opts: DemoOptions, console: Console | None = None) -> dict[str, Any]:
    """Run every stage (module docstring); return the summary dict (also written to ``<out>/summary.json``)."""
    from abharness.core.clickmodels import make_click_model
    from abharness.simulate import QueryPool

    con = console or Console()
    t_start = time.perf_counter()
    out = opts.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not (opts.data / "scifact" / "queries.jsonl").is_file():
        raise DataError(f"--data-root {str(opts.data)!r}: no scifact/queries.jsonl there; pass the folder holding "
                        "scifact/ (e.g. --data-root ../shared/data)")
    run = s.StageRunner(con, N_STAGES)
    data_dir, test = run.run("data", s.prepare_data, opts.data, out, quick=opts.quick, seed=opts.seed)
    art = s.Artifacts.under(opts.artifacts_root(out), quick=opts.quick)
    run.run("fine-tune the candidate", s.finetune_candidate, data_dir, art.model, quick=opts.quick, seed=opts.seed)
    encoders = run.run("build both indexes; export the fast (ONNX) query encoders", s.build_indexes, data_dir, test,
                       art, console=con)
    evaluation = run.run("offline evaluation", s.offline_evaluation, data_dir, art.model, out / "evaluation",
                         quick=opts.quick, encoders=encoders)
    arms, encoder_notes = encoders.arms(art), encoders.notes
    del encoders  # the live stages load the served encoders in the backends
    store_path, store_url = fresh_event_log(out)
    live = {"k": opts.k, "queries_per_user": opts.queries_per_user, "concurrency": opts.concurrency}
    with s.open_arms(arms) as backends:
        pool = QueryPool.from_dataset(test, zipf_s=1.0, seed=opts.seed)
        clicks = make_click_model(opts.click_model, preset=opts.preset, max_grade=pool.max_grade)
        sens = run.run("rank the test queries; interleaving vs A/B sensitivity", s.sensitivity, backends, pool,
                       clicks, k=opts.k, queries_per_user=opts.queries_per_user,
                       replicates=opts.sensitivity_replicates, quick=opts.quick, seed=opts.seed, console=con)
        ab_n = _clamp(1.2 * sens.primary_ab.impressions_needed, opts.ab_searches)
        ab = run.run(f"A/B run through the proxy (50/50, {ab_n:,} searches) and analysis", s.ab_run, store_url,
                     arms, backends, pool, clicks, ab_n, seed=opts.seed + 1, **live)
        rep = run.run("replay of the logged A/B queries", s.replay_ab, store_url, backends, test, out,
                      seed=opts.seed, console=con)
        il_n = _clamp(1.5 * sens.interleaving.impressions_needed, opts.interleave_searches)
        il = run.run(f"interleaving run through the proxy ({il_n:,} searches) and analysis", s.interleaving_run,
                     store_url, arms, backends, pool, clicks, il_n, seed=opts.seed + 2, **live)
    found = verdicts(evaluation=evaluation, ab=ab.report, interleave=il.report, replay=rep, sensitivity=sens,
                     sim_ab=ab.simulation, sim_il=il.simulation)

    def summary() -> dict[str, Any]:
        return {**summary_dict(found, sensitivity=sens, sim_ab=ab.simulation, sim_il=il.simulation, replay=rep,
                               stages=run.records),
                "wall_seconds": round(time.perf_counter() - t_start, 1), "quick": opts.quick, "encoders": encoder_notes,
                "artifacts": {"model": str(art.model), "index_baseline": str(art.index_baseline),
                              "index_finetuned": str(art.index_finetuned), "events": str(store_path)}}

    run.run("report", write_reports, out, summary(), ab=ab.report, interleave=il.report, sensitivity=sens,
            evaluation=evaluation, replay=rep, now=time.time())
    final = summary()
    (out / "summary.json").write_text(json.dumps(final, indent=2, default=str), encoding="utf-8")
    render_summary(final, con, out)
    return final
