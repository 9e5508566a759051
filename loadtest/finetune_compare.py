"""Fine-tuning comparison: training length 128 vs 256, hand-written loop vs ``SentenceTransformerTrainer``.

Each configuration fine-tunes the built-in MiniLM on SciFact train (same loss, pairs, seed, 1 epoch, batch 32,
lr 5e-5), then scores SciFact test through the evaluation's own ranking path (``evaluation.context.Context.rank``:
the shared ``build_index`` flat index over ``encode_cached`` corpus embeddings) and metric code
(``core.irmetrics.compute_table``, paired tests from ``evaluation.retrieval.compare_tables``). The baseline's corpus
embeddings are computed once and reused from the embedding cache by every configuration.

    export ABHARNESS_CACHE=$PWD/artifacts/cache
    nice python loadtest/finetune_compare.py --distractors 700 baseline
    nice python loadtest/finetune_compare.py --distractors 700 run --name st-256 --trainer st --max-seq-length 256
    python loadtest/finetune_compare.py table          # markdown table of every finished run

Results (model, index, result.json with wall times and load averages) go under ``artifacts/finetune-compare/``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

ROOT = Path("artifacts/finetune-compare")
METRICS = ("ndcg@10", "recall@10", "mrr@10", "recall@100")
DEPTH = 100
SLICE_SEED = 7


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _context(data: Path, candidate: str | None) -> Any:
    from abharness.encoders import load_encoder
    from abharness.evaluation.context import Context
    from abharness.evaluation.suite import load_suite

    models = {"baseline": load_encoder("minilm")}
    if candidate:
        models["candidate"] = load_encoder(candidate)
    return Context(suite=load_suite(None), data_dir=data.parent, models=models, progress=True)


def _test_set(data: Path, distractors: int | None) -> Any:
    """SciFact test: the full corpus, or (``--distractors N``) every test query with all its judged documents plus N
    seeded other documents (``slice_dataset``, the slicing ``evaluate --limit`` uses), so that each model encodes
    about 1,000 documents instead of 5,183 on a loaded machine."""
    from abharness.data import slice_dataset
    from abharness.data.beir import load_beir

    ds = load_beir(data, "test", empty_docs="keep")
    return ds if distractors is None else slice_dataset(ds, len(ds.queries), distractors, seed=SLICE_SEED)


def _score(ctx: Any, data: Path, role: str, distractors: int | None) -> tuple[Any, dict[str, float], float]:
    from abharness.core.irmetrics import compute_table

    ds = _test_set(data, distractors)
    started = time.perf_counter()
    run = ctx.rank(role, ds, DEPTH)
    seconds = time.perf_counter() - started
    table = compute_table(run, ds.qrels, METRICS)
    return table, {m: round(float(table.scores[m].mean()), 4) for m in METRICS}, round(seconds, 1)


def baseline(args: argparse.Namespace) -> None:
    load_before = _load()
    ctx = _context(args.data, None)
    _, means, seconds = _score(ctx, args.data, "baseline", args.distractors)
    out = args.root / "baseline"
    out.mkdir(parents=True, exist_ok=True)
    result = {"name": "baseline", "fingerprint": ctx.models["baseline"].fingerprint, "metrics": means,
              "distractors": args.distractors,
              "encode_and_rank_seconds": seconds, "load_before": load_before, "load_after": _load()}
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result))


def run(args: argparse.Namespace) -> None:
    from abharness.evaluation.retrieval import compare_tables
    from abharness.finetune import FinetuneParams, finetune

    out = args.root / args.name
    model_dir = out / "model"
    load_before = _load()
    started, cpu_started = time.perf_counter(), time.process_time()
    if not (model_dir / "abharness_manifest.json").is_file():
        params = FinetuneParams(max_seq_length=args.max_seq_length, trainer=args.trainer)
        finetune(args.data, base="minilm", out_dir=model_dir, params=params, seed=args.seed, overwrite=True)
    finetune_seconds = round(time.perf_counter() - started, 1)
    finetune_cpu_seconds = round(time.process_time() - cpu_started, 1)  # all threads of this process
    load_after_finetune = _load()
    manifest = json.loads((model_dir / "abharness_manifest.json").read_text(encoding="utf-8"))
    ctx = _context(args.data, str(model_dir))
    cand_table, cand, cand_seconds = _score(ctx, args.data, "candidate", args.distractors)
    base_table, base, _ = _score(ctx, args.data, "baseline", args.distractors)  # cached after the baseline step
    paired = compare_tables(base_table, cand_table, METRICS, n_resamples=10_000, seed=args.seed)
    result = {
        "name": args.name, "trainer": args.trainer, "max_seq_length": args.max_seq_length, "seed": args.seed,
        "distractors": args.distractors,
        "fingerprint": manifest["fingerprint"], "train_loss": manifest["train_loss"], "pairs": len(manifest["pairs"]),
        "metrics": cand, "baseline": base,
        "paired": {c.metric: {"delta": round(c.delta, 4), "p": round(c.p_value, 4), "p_holm": round(c.p_holm, 4),
                              "wins": c.wins, "losses": c.losses} for c in paired},
        "finetune_wall_seconds": manifest["wall_seconds"], "finetune_step_seconds": finetune_seconds,
        "finetune_cpu_seconds": finetune_cpu_seconds,
        "encode_and_rank_seconds": cand_seconds,
        "load_before": load_before, "load_after_finetune": load_after_finetune, "load_after": _load(),
    }
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result))


def table(args: argparse.Namespace) -> None:
    rows = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(args.root.glob("*/result.json"))]
    print("| configuration | trainer | train length | fingerprint | nDCG@10 | recall@10 | MRR@10 | recall@100 "
          "| Δ nDCG@10 (p) | Δ recall@10 (p) | fine-tune wall | load avg (1 min) before → after fine-tune |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        m = r["metrics"]
        if r["name"] == "baseline":
            print(f"| baseline (all-MiniLM-L6-v2) | – | – | `{r['fingerprint']}` | {m['ndcg@10']:.4f} | "
                  f"{m['recall@10']:.4f} | {m['mrr@10']:.4f} | {m['recall@100']:.4f} | | | | {r['load_before'][0]} |")
            continue
        p = r["paired"]
        print(f"| {r['name']} | {r['trainer']} | {r['max_seq_length']} | `{r['fingerprint']}` | {m['ndcg@10']:.4f} | "
              f"{m['recall@10']:.4f} | {m['mrr@10']:.4f} | {m['recall@100']:.4f} | "
              f"{p['ndcg@10']['delta']:+.4f} ({p['ndcg@10']['p']:.3f}) | "
              f"{p['recall@10']['delta']:+.4f} ({p['recall@10']['p']:.3f}) | {r['finetune_wall_seconds']:.0f} s | "
              f"{r['load_before'][0]} → {r['load_after_finetune'][0]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--distractors", type=int, default=None,
                        help="Score on a slice: all test queries, their judged documents and N other documents.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("baseline")
    r = sub.add_parser("run")
    r.add_argument("--name", required=True)
    r.add_argument("--trainer", choices=("st", "loop"), required=True)
    r.add_argument("--max-seq-length", type=int, required=True)
    r.add_argument("--seed", type=int, default=42)
    sub.add_parser("table")
    args = parser.parse_args()
    {"baseline": baseline, "run": run, "table": table}[args.command](args)


if __name__ == "__main__":
    main()
