"""Per-MatMul int8 sensitivity of a sentence-transformers model's ONNX graph, and a greedy mixed-precision search.

    .venv/bin/python loadtest/encoder_sensitivity.py [--model minilm] [--data ../shared/data/scifact]
        [--select train] [--select-queries 300] [--no-groups] [--extra 4] [--json F]

1. Export the transformer once (``abharness.export.variants.export_fp32``); split its weight MatMuls into units per
   layer: ``qkv`` (Q, K, V share an input and fuse into one Attention; ``--no-groups`` takes them one by one),
   ``attn-out``, ``ffn-in``, ``ffn-out``.
2. Quantize each unit *alone* to int8 (dynamic, per-channel weights) and measure its agreement with torch: mean
   cosine of the query embeddings and mean top-10 overlap of the rankings over the torch document embeddings of the
   whole corpus, on a seeded sample of ``--select`` queries (the selection set, default train) and on every test
   query (the set the export's gate measures).
3. Order the units by harm per multiply-accumulate (``(1 - overlap) + 10 (1 - cosine)`` on the selection set,
   divided by the unit's weight MACs); find the longest prefix of that order that keeps the selection set at or
   above ``--min-overlap`` and ``--min-cosine`` (bisection), then try the next ``--extra`` units one at a time.
4. Print the chosen units, the share of the weight MACs they hold, and their agreement on both splits.

Selecting on train and reporting test keeps the choice from being fitted to the very queries the gate measures.
Timing is left to ``loadtest/bench_encoder.py`` (torch and every variant taking turns in one run); the chosen units
are what ``int8-mixed`` (``abharness.export.variants.MIXED_UNITS``) quantizes.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ABHARNESS_SHARED_DATA", REPO.parent / "shared" / "data"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="minilm")
    p.add_argument("--data", type=Path, default=DATA / "scifact")
    p.add_argument("--select", default="train", help="split whose queries choose the set (test = the gate's own)")
    p.add_argument("--min-overlap", type=float, default=0.99)
    p.add_argument("--min-cosine", type=float, default=0.99)
    p.add_argument("--json", type=Path, help="write every measurement here")
    p.add_argument("--groups", action=argparse.BooleanOptionalAction, default=True,
                   help="Q, K and V of a layer as one unit (default; they share an input and fuse into one Attention)")
    p.add_argument("--select-queries", type=int, default=300, help="a seeded sample of this many selection queries")
    p.add_argument("--extra", type=int, default=4, help="after the longest passing prefix, try this many more units")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import onnx
    import onnxruntime as ort
    import torch

    from abharness.data import load_beir
    from abharness.encoders.cache import encode_cached
    from abharness.encoders.onnx import pool
    from abharness.encoders.st import load_encoder
    from abharness.export.agreement import agreement
    from abharness.export.mixed import matmul_roles, quantize_matmuls
    from abharness.export.variants import export_fp32

    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.2f}; model {args.model}; select on {args.select}, gate on test")
    reference = load_encoder(args.model)
    test = load_beir(args.data, split="test")
    sel = load_beir(args.data, split=args.select)
    doc_ids = list(test.corpus)
    documents = encode_cached(reference, [test.corpus[d].full_text for d in doc_ids],
                              key=f"corpus-{test.corpus_hash[:16]}", progress=True, kind="document")
    splits = {"test": list(dict.fromkeys(test.queries[q] for q in sorted(test.qrels))),
              args.select: list(dict.fromkeys(sel.queries[q] for q in sorted(sel.qrels)))}
    pick = np.random.default_rng(0).permutation(len(splits[args.select]))[: args.select_queries]
    splits[args.select] = [splits[args.select][i] for i in sorted(pick)]
    refs = {s: reference.encode(texts, batch_size=64, kind="query") for s, texts in splits.items()}
    tokenizer = reference.model[0].tokenizer
    settings = reference.model[1].get_config_dict()
    mode = settings.get("pooling_mode") or ("mean" if settings.get("pooling_mode_mean_tokens") else "cls")
    feeds = {}
    for s, texts in splits.items():
        enc = [tokenizer(texts[i:i + 64], padding=True, truncation=True, max_length=reference.model.max_seq_length,
                         return_tensors="np") for i in range(0, len(texts), 64)]
        feeds[s] = enc

    def measure(file: Path) -> dict[str, dict[str, float]]:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        out = {}
        for s, batches in feeds.items():
            rows = []
            for b in batches:
                (tok,) = session.run(None, {n: np.asarray(b[n], dtype=np.int64) for n in names})[:1]
                rows.append(pool(tok, b["attention_mask"], mode, True))
            a = agreement(refs[s], np.concatenate(rows), documents, k=10)
            out[s] = {"overlap": round(a.topk_overlap, 4), "cosine": round(a.cosine_mean, 6)}
        return out

    with tempfile.TemporaryDirectory(prefix="abharness-sens-") as tmp:
        work = Path(tmp)
        fp32 = work / "fp32.onnx"
        export_fp32(reference.source, fp32)
        roles = matmul_roles(fp32)

        def role(name: str) -> tuple[int, str]:
            return roles.get(name, (-1, "?"))

        graph = onnx.load(str(fp32)).graph
        inits = {i.name: i for i in graph.initializer}
        weights = {n.name: tuple(inits[n.input[1]].dims) for n in graph.node if n.op_type == "MatMul"
                   and n.input[1] in inits}
        print(f"{len(weights)} weight MatMuls; fp32 graph agreement {measure(fp32)}")
        units: dict[str, list[str]] = {}
        for name in weights:
            layer, r = role(name)
            group = "qkv" if r in {"q", "k", "v"} and args.groups else r
            units.setdefault(f"{layer}:{group}", []).append(name)
        macs = {u: sum(float(np.prod(weights[n])) for n in names) for u, names in units.items()}
        singles = {}
        t0 = time.time()
        for unit, names in units.items():
            q = work / "one.onnx"
            quantize_matmuls(fp32, q, names)
            singles[unit] = measure(q)
            print(f"  alone int8: {unit:<12} {args.select} overlap {singles[unit][args.select]['overlap']:.4f} cos "
                  f"{singles[unit][args.select]['cosine']:.6f} | test overlap {singles[unit]['test']['overlap']:.4f} "
                  f"cos {singles[unit]['test']['cosine']:.6f}", flush=True)
        print(f"singles took {time.time() - t0:.0f} s")

        def harm(unit: str) -> float:
            m = singles[unit][args.select]
            return ((1 - m["overlap"]) + 10 * (1 - m["cosine"])) / macs[unit]

        order = sorted(units, key=harm)
        print(f"order (least harm per MAC first): {order}")

        def prefix(n: int) -> dict[str, dict[str, float]]:
            q = work / "prefix.onnx"
            quantize_matmuls(fp32, q, [m for u in order[:n] for m in units[u]])
            return measure(q)

        def ok(m: dict[str, dict[str, float]]) -> bool:
            return m[args.select]["overlap"] >= args.min_overlap and m[args.select]["cosine"] >= args.min_cosine

        # the longest passing prefix of that order, by bisection (agreement falls, not strictly, as units are added)
        lo, hi, trail = 0, len(order), []
        while lo < hi:
            mid = (lo + hi + 1) // 2
            m = prefix(mid)
            trail.append({"n": mid, **m, "pass": ok(m)})
            print(f"  first {mid:>2} units in int8 -> {args.select} {m[args.select]}  test {m['test']}  "
                  f"{'pass' if ok(m) else 'fail'}", flush=True)
            lo, hi = (mid, hi) if ok(m) else (lo, mid - 1)
        chosen_units = order[:lo]
        # then greedy: try each remaining unit once, keep it when the selection set still passes
        for unit in order[lo:lo + args.extra]:
            q = work / "greedy.onnx"
            quantize_matmuls(fp32, q, [m for u in [*chosen_units, unit] for m in units[u]])
            m = measure(q)
            trail.append({"add": unit, **m, "pass": ok(m)})
            print(f"  + {unit:<12} -> {args.select} {m[args.select]}  test {m['test']}  {'keep' if ok(m) else 'drop'}",
                  flush=True)
            if ok(m):
                chosen_units.append(unit)
        chosen = [m for u in chosen_units for m in units[u]]
        share = sum(macs[u] for u in chosen_units) / sum(macs.values())
        q = work / "final.onnx"
        quantize_matmuls(fp32, q, chosen)
        final = measure(q)
        print(f"\nchosen {len(chosen_units)}/{len(units)} units in int8 ({share:.0%} of the weight MACs): {chosen_units}")
        print(f"agreement: {final}; load average {os.getloadavg()[0]:.2f}")
        if args.json:
            args.json.write_text(json.dumps({"singles": singles, "order": order, "trail": trail,
                                             "chosen": chosen_units, "final": final, "weight_mac_share": share}, indent=2))


if __name__ == "__main__":
    main()
