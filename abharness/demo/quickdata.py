"""The demo's ``--quick`` data: a seeded SciFact slice written in BEIR layout (stage 1 of the demo)."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["write_quick_data"]


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
