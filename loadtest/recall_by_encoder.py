"""recall@10 / nDCG@10 of each arm served with each query encoder (torch and its ONNX export), SciFact test.

    .venv/bin/python loadtest/recall_by_encoder.py \\
        --arm baseline=artifacts/indexes/scifact-minilm,minilm,artifacts/onnx/minilm \\
        --arm finetuned=artifacts/indexes/scifact-ft,artifacts/models/scifact-ft,artifacts/onnx/scifact-ft

Each arm is an index and its query encoders; every (arm, encoder) pair is served by the real ``LocalBackend`` (so
the index's acceptance rule applies) and ranked with the shared ``abharness.backends.retrieval.search``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ABHARNESS_SHARED_DATA", REPO.parent / "shared" / "data"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arm", action="append", required=True, help="NAME=INDEX_DIR,ENCODER[,ENCODER...]")
    p.add_argument("--data", type=Path, default=DATA / "scifact")
    p.add_argument("--k", type=int, default=10)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from abharness.backends.local import open_local_backend
    from abharness.backends.retrieval import search
    from abharness.core.irmetrics import compute
    from abharness.data import load_beir

    ds = load_beir(args.data, split="test")
    qids = sorted(ds.qrels)
    print(f"{ds.name} test: {len(qids)} queries, {len(ds.corpus)} documents; load average {os.getloadavg()[0]:.2f}")
    print(f"{'arm':<12} {'query encoder':<40} {'recall@10':>10} {'nDCG@10':>9}")
    for spec in args.arm:
        name, _, rest = spec.partition("=")
        index, *encoders = rest.split(",")
        for enc in encoders:
            with open_local_backend(index, enc, cache_size=0) as backend:
                hits = search(backend, [ds.queries[q] for q in qids], args.k)
                kind = getattr(backend.encoder, "variant", "torch")
            run = {q: {h.doc_id: h.score for h in row} for q, row in zip(qids, hits)}
            scores = compute(run, ds.qrels, [f"recall@{args.k}", f"ndcg@{args.k}"])
            print(f"{name:<12} {kind + ' ' + enc:<40} {scores[f'recall@{args.k}'].mean():>10.4f} "
                  f"{scores[f'ndcg@{args.k}'].mean():>9.4f}")


if __name__ == "__main__":
    main()
