"""Benchmark: the cold demo's document encoding (stages 3 and 4), the old way and the new, in one process.

    .venv/bin/python loadtest/bench_demo_encoding.py [--docs 256] [--sets scifact,cisi] [--rounds 2]

Two torch copies of MiniLM stand for the two arms (the fine-tuned model has MiniLM's shape, so the same cost).
Per set, ``--docs`` documents (a seeded sample) of each model are encoded into an empty cache (fresh per run):

* ``before``: one model after the other at the process's torch threads, batches sorted by characters (the demo
  until 2026-12-03);
* ``after``: ``encode_cached_side_by_side`` (one torch thread per model on 2 CPUs), batches sorted by tokens.

Runs alternate (``--rounds`` of each); prints docs/s with the load average per run, and the agreement of the
``after`` embeddings with the ``before`` ones (cosine; identical top-10 lists of the set's test queries over the
sample). Needs ``../shared/data`` (or ``$ABHARNESS_DATA``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=256, help="documents per set (a seeded sample)")
    p.add_argument("--sets", default="scifact,cisi", help="BEIR sets under the data root, comma-separated")
    p.add_argument("--rounds", type=int, default=2, help="runs of each way, alternating")
    p.add_argument("--data-root", type=Path,
                   default=Path(os.environ.get("ABHARNESS_DATA", REPO.parent / "shared" / "data")))
    args = p.parse_args()

    import torch

    from abharness.data import load_beir
    from abharness.encoders import load_encoder
    from abharness.encoders.cache import encode_cached, encode_cached_side_by_side

    models = [load_encoder("minilm"), load_encoder("minilm")]
    models[1].fingerprint = models[1].fingerprint[:-1] + "x"  # a distinct cache entry, as the fine-tuned model has
    token_lengths = [m.token_lengths for m in models]
    sets = {}
    for name in args.sets.split(","):
        ds = load_beir(args.data_root / name, "test", empty_docs="keep")
        ids = list(ds.corpus)
        pick = sorted(np.random.default_rng(0).permutation(len(ids))[: args.docs])
        sets[name] = ([ds.corpus[ids[i]].full_text for i in pick], list(dict.fromkeys(ds.queries.values())))
    for m in models:
        m.encode(["warm up"] * 4, batch_size=4)
    threads = torch.get_num_threads()
    print(f"{len(sets)} sets x {args.docs} documents x 2 models; torch threads {threads}", flush=True)

    def run(way: str) -> dict[str, list[np.ndarray]]:
        out = {}
        for m, lengths in zip(models, token_lengths):
            m.token_lengths = lengths if way == "after" else (lambda texts: None)
        with tempfile.TemporaryDirectory(prefix="abh-bench-enc-") as cache:
            for name, (texts, _) in sets.items():
                jobs = [(m, texts, name) for m in models]
                if way == "after":
                    out[name] = encode_cached_side_by_side(jobs, cache_dir=Path(cache), progress=False)
                else:
                    out[name] = [encode_cached(m, t, key=k, cache_dir=Path(cache), progress=False) for m, t, k in jobs]
        return out

    results: dict[str, list[float]] = {"before": [], "after": []}
    embeddings = {}
    for _ in range(args.rounds):
        for way in ("before", "after"):
            load0 = os.getloadavg()[0]
            t0 = time.perf_counter()
            embeddings[way] = run(way)
            wall = time.perf_counter() - t0
            rate = 2 * args.docs * len(sets) / wall
            results[way].append(rate)
            print(f"  {way:6s} {wall:6.1f} s  {rate:6.2f} docs/s  (load {load0:.2f} -> {os.getloadavg()[0]:.2f})",
                  flush=True)
    for way in ("before", "after"):
        print(f"{way}: median {np.median(results[way]):.2f} docs/s over {args.rounds} run(s)")
    print(f"after / before: {np.median(results['after']) / np.median(results['before']):.2f}x")
    for name, (_, queries) in sets.items():
        for i, m in enumerate(models):
            a, b = embeddings["before"][name][i], embeddings["after"][name][i]
            q = m.encode(queries, batch_size=64)
            same = np.mean([(x == y).all() for x, y in zip(np.argsort(-(q @ a.T), 1)[:, :10],
                                                           np.argsort(-(q @ b.T), 1)[:, :10])])
            print(f"{name} model {i}: cosine min {(a * b).sum(1).min():.7f}; identical top-10 for {same:.4f} of "
                  f"{len(queries)} queries")


if __name__ == "__main__":
    main()
