"""Query-encoder frontier: every ONNX variant against torch, p50 and agreement, in one run (a script, not a test).

    .venv/bin/python loadtest/bench_encoder.py [--model minilm] [--data ../shared/data/scifact]
        [--out artifacts/onnx/minilm] [--threads 1] [--variant fp32 --variant int8-dyn ...] [--summary-json F]

It runs ``abharness model export --onnx`` with every variant (``abharness.export.VARIANTS``): each is built from the
same exported graph, its query embeddings of the data set's test queries are compared with torch's (cosine, top-10
overlap of rankings over the torch document embeddings of the whole corpus), and then torch and all variants encode
every test query alone (batch of one, ``--threads`` threads each), taking turns query by query so they share the
machine's load. The fastest variant that passes the gate (top-10 overlap >= 0.99, mean cosine >= 0.99) is written
to ``--out``; that is the encoder the other benchmarks and the demo serve. Torch here is the production path,
``SentenceTransformerEncoder.encode([q])`` (sentence-transformers ``encode`` under ``torch.inference_mode``).

The variants include the mixed-precision ones (``int8-mixed``: the units ``loadtest/encoder_sensitivity.py`` chose;
``int8-fused-ffn``, ``int8-fused-ffn-in``) and ``int8-smooth`` (SmoothQuant-style scaling), so this one command
reproduces the whole frontier table of docs/performance.md (about 45 min for all 13 variants at load 10).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ABHARNESS_SHARED_DATA", REPO.parent / "shared" / "data"))


def print_frontier(rows: list[dict], torch_p50: float) -> None:
    print(f"\n{'variant':<20} {'p50 ms':>8} {'p90 ms':>8} {'vs torch':>9} {'top-10 overlap':>15} {'min overlap':>12} "
          f"{'cos mean':>9} {'cos min':>9} {'MB':>6}  gate")
    print(f"{'torch (ST encode)':<20} {torch_p50:>8.2f} {'':>8} {'1.0x':>9}")
    for r in rows:
        if "error" in r:
            print(f"{r['variant']:<20} {'-':>8} {'-':>8} {'-':>9} {'-':>15} {'-':>12} {'-':>9} {'-':>9} {'-':>6}  error: "
                  f"{r['error'][:80]}")
            continue
        print(f"{r['variant']:<20} {r['p50_ms']:>8.2f} {r['p90_ms']:>8.2f} {r['speedup']:>8.1f}x {r['topk_overlap']:>15.3f} "
              f"{r['topk_overlap_min']:>12.1f} {r['cosine_mean']:>9.4f} {r['cosine_min']:>9.4f} "
              f"{r['bytes'] / 1e6:>6.1f}  {'pass' if r['passes'] else 'FAIL'}")


def print_documents(d: dict) -> None:
    print(f"\ndocument encoding, {d['n']} SciFact documents, {d['threads']} threads each, taking turns: torch "
          f"{d['torch_docs_per_s']:.1f} docs/s, ONNX {d['onnx_docs_per_s']:.1f} docs/s ({d['speedup']:.2f}x); cosine "
          f"mean {d['cosine_mean']:.6f}, min {d['cosine_min']:.6f}")


def bench_documents(model: str, data: Path, export_dir: Path, n: int, threads: int) -> dict:
    """Documents/s of torch and of the written export on a seeded sample of ``n`` corpus documents, ``threads``
    threads each, alternating chunks of 64 (batches of 32) so both see the same load; and their mean cosine."""
    import numpy as np
    import torch

    from abharness.data import load_beir
    from abharness.encoders import load_encoder
    from abharness.encoders.onnx import load_onnx_encoder

    corpus = load_beir(data, split="test").corpus
    ids = sorted(corpus)
    pick = np.random.default_rng(1).permutation(len(ids))[:n]
    texts = [corpus[ids[i]].full_text for i in sorted(pick)]
    reference, fast = load_encoder(model), load_onnx_encoder(export_dir, threads=threads)
    torch.set_num_threads(threads)
    spent = {"torch": 0.0, "onnx": 0.0}
    cos = []
    for start in range(0, len(texts), 64):
        chunk = texts[start:start + 64]
        t0 = time.perf_counter()
        a = reference.encode(chunk, batch_size=32, kind="document")
        t1 = time.perf_counter()
        b = fast.encode(chunk, batch_size=32, kind="document")
        spent["torch"] += t1 - t0
        spent["onnx"] += time.perf_counter() - t1
        cos.extend(np.sum(a * b, axis=1).tolist())
    return {"n": len(texts), "threads": threads, "torch_docs_per_s": len(texts) / spent["torch"],
            "onnx_docs_per_s": len(texts) / spent["onnx"], "speedup": spent["torch"] / spent["onnx"],
            "cosine_mean": float(np.mean(cos)), "cosine_min": float(np.min(cos))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="minilm")
    p.add_argument("--data", type=Path, default=DATA / "scifact")
    p.add_argument("--out", type=Path, default=REPO / "artifacts" / "onnx" / "minilm")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--variant", action="append", help="only these variants (default: all)")
    p.add_argument("--summary-json", type=Path, help="also write the figures as JSON here")
    p.add_argument("--documents", type=int, default=0,
                   help="also time document encoding, torch vs the written export, on this many corpus documents")
    p.add_argument("--doc-threads", type=int, default=os.cpu_count() or 1, help="threads for --documents")
    p.add_argument("--skip-export", action="store_true", help="reuse the export already in --out (with --documents)")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from abharness.errors import AbharnessError
    from abharness.export import export_onnx

    load0 = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} at start "
          "(shared machine: absolute ms move with the load, the ratios much less, since all encoders take turns)")
    print(f"model {args.model}, agreement and latency on the test queries of {args.data}, {args.threads} thread(s)")
    if args.skip_export:
        docs = bench_documents(args.model, args.data, args.out, args.documents, args.doc_threads)
        print_documents(docs)
        return
    try:
        result = export_onnx(args.model, args.data, args.out, variants=args.variant, threads=args.threads,
                             overwrite=True, progress=True)
    except AbharnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    m = result.manifest
    print_frontier(m.frontier, result.torch_p50_ms)
    a = m.agreement
    load1 = os.getloadavg()
    print(f"\nserved by default: {m.variant} -> {args.out} (fingerprint {m.fingerprint}, source {m.source_fingerprint}): "
          f"p50 {a['p50_ms']:.2f} ms vs torch {result.torch_p50_ms:.2f} ms = {a['speedup']:.1f}x, top-10 overlap "
          f"{a['topk_overlap']:.3f}, mean cosine {a['cosine_mean']:.4f} over {a['n_queries']} queries")
    docs = bench_documents(args.model, args.data, args.out, args.documents, args.doc_threads) if args.documents else None
    if docs:
        print_documents(docs)
    load1 = os.getloadavg()
    print(f"load average at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    if args.summary_json:
        args.summary_json.write_text(json.dumps({
            "torch_p50_ms": result.torch_p50_ms, "chosen": m.variant, "chosen_p50_ms": a["p50_ms"],
            "speedup": a["speedup"], "topk_overlap": a["topk_overlap"], "cosine_mean": a["cosine_mean"],
            "frontier": m.frontier, "load": [load0[0], load1[0]], "out": str(args.out), "documents": docs,
        }, indent=2))


if __name__ == "__main__":
    main()
