"""One function per check: load its data, embed with both models, call the pure maths, return a JSON-ready dict
with at least ``verdict`` and ``headline``. Run in order by ``runner.evaluate``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from abharness.core.significance import PairedComparison, compare_paired
from abharness.data import load_beir, load_sick, load_stsb, load_trec, slice_dataset
from abharness.errors import DataError
from abharness.evaluation import checks, geometry
from abharness.evaluation.context import ROLES, Context
from abharness.evaluation.leakage import find_leaks, manifest_field
from abharness.evaluation.probes import load_probes, score_probes
from abharness.evaluation.retrieval import comparison_dict, score_runs

__all__ = ["SECTIONS"]


def _fmt_delta(name: str, base: float, cand: float, lo: float, hi: float, p: float | None = None) -> str:
    p_text = f", p={p:.3g}" if p is not None else ""
    return f"{name} {base:.3f} -> {cand:.3f} ({cand - base:+.3f}, 95% CI [{lo:+.3f}, {hi:+.3f}]{p_text})"


def _load_retrieval(ctx: Context, name: str, split: str, queries: int | None = None, distractors: int | None = None):
    """A BEIR split, optionally sliced (``slice_dataset``: ``queries`` judged queries, all their judged documents and
    ``distractors`` other documents, seeded) for quick runs. Memoised so every check sees the same slice."""
    key = ("dataset", name, split, queries, distractors)
    if key not in ctx.memo:
        ds = load_beir(ctx.dataset_dir(name), split, empty_docs="keep")
        if queries is not None or distractors is not None:
            ds = slice_dataset(ds, queries or len(ds.queries), len(ds.corpus) if distractors is None else distractors,
                               seed=ctx.suite.seed)
        ctx.memo[key] = ds
    return ctx.memo[key]


def _in_domain(ctx: Context):
    cfg = ctx.suite.retrieval
    return _load_retrieval(ctx, cfg.dataset, cfg.split, cfg.sample_queries, cfg.sample_distractors)


def retrieval(ctx: Context) -> dict[str, Any]:
    cfg, s = ctx.suite.retrieval, ctx.suite
    ds = _in_domain(ctx)
    ctx.prepare_corpus(ds)
    runs = {role: ctx.rank(role, ds, cfg.depth) for role in ROLES}
    base, cand = score_runs(runs["baseline"], runs["candidate"], ds.qrels, cfg.metrics)
    ctx.memo["retrieval_tables"] = (ds, base, cand)
    out = comparison_dict(
        base, cand, cfg.metrics, cfg.primary_metric, ds.queries, n_resamples=s.n_resamples, seed=s.seed,
        alpha=s.alpha, worst=cfg.worst_queries,
    )
    row = next(r for r in out["metrics"] if r["metric"] == cfg.primary_metric)
    out["dataset"] = f"{cfg.dataset}/{cfg.split}"
    out["headline"] = (
        f"{cfg.dataset} {cfg.split}: "
        + _fmt_delta(row["metric"], row["baseline"], row["candidate"], *row["ci"])
        + f", Holm p={row['p_holm']:.3g}; W/T/L {row['wins']}/{row['ties']}/{row['losses']}"
    )
    return out


def overfitting(ctx: Context) -> dict[str, Any]:
    cfg, s = ctx.suite.overfitting, ctx.suite
    primary = ctx.suite.retrieval.primary_metric
    if "retrieval_tables" not in ctx.memo:
        retrieval(ctx)
    _, base_in, cand_in = ctx.memo["retrieval_tables"]
    in_domain = compare_paired(primary, base_in.scores[primary], cand_in.scores[primary], n_resamples=s.n_resamples,
                               seed=s.seed)
    ood: dict[str, PairedComparison] = {}
    for item in cfg.sets:
        ds = _load_retrieval(ctx, item.dataset, item.split, item.sample_queries, item.sample_distractors)
        ctx.prepare_corpus(ds)
        runs = {role: ctx.rank(role, ds, ctx.suite.retrieval.depth) for role in ROLES}
        b, c = score_runs(runs["baseline"], runs["candidate"], ds.qrels, [primary])
        ood[f"{item.dataset}/{item.split}"] = compare_paired(
            primary, b.scores[primary], c.scores[primary], n_resamples=s.n_resamples, alpha=s.alpha, seed=s.seed
        )
    out = checks.overfitting_flags(in_domain, ood, margin=cfg.margin)
    parts = [f"{n} {v['delta']:+.3f}" for n, v in out["sets"].items()]
    out["headline"] = (
        f"{primary}: in-domain {in_domain.delta:+.3f}; out-of-domain " + ", ".join(parts)
        + (f"; FLAGGED (drop > {cfg.margin}): {', '.join(out['flagged'])}" if out["flagged"] else
           f"; no drop beyond {cfg.margin}")
    )
    return out


def leakage(ctx: Context) -> dict[str, Any]:
    cfg, s = ctx.suite.leakage, ctx.suite
    manifest = ctx.manifest
    if manifest is None:
        return {
            "verdict": "skipped", "headline": "candidate has no abharness_manifest.json: leakage cannot be checked",
            "n_test_queries": 0, "exact": [], "near": [], "leaked_fraction": 0.0,
        }
    if "retrieval_tables" not in ctx.memo:
        retrieval(ctx)
    ds, base_t, cand_t = ctx.memo["retrieval_tables"]
    test_queries = {q: ds.queries[q] for q in base_t.query_ids}
    train_queries: list[tuple[str, str]] = []
    notes: list[str] = []
    data_path = manifest_field(manifest, "data_path")
    split = manifest_field(manifest, "split", "train")
    ids = list(manifest_field(manifest, "query_ids", []) or [])
    candidates = [Path(data_path)] if data_path else []
    candidates.append(ctx.data_dir / ctx.suite.retrieval.dataset)
    for path in candidates:
        try:
            train = load_beir(path, split, empty_docs="keep")
        except DataError as exc:
            notes.append(f"training queries not readable from {path}: {exc}")
            continue
        train_queries = [(q, train.queries[q]) for q in ids if q in train.queries]
        notes.append(f"training query texts read from {path} split {split} ({len(train_queries)}/{len(ids)} found)")
        break
    recorded = manifest_field(manifest, "fingerprint")
    actual = ctx.models["candidate"].fingerprint
    if recorded and recorded != actual:
        notes.append(f"manifest fingerprint {recorded} differs from the candidate's {actual}: the manifest may "
                     "describe another model")
    test_emb = train_emb = None
    if train_queries:
        test_emb = ctx.embed("baseline", list(test_queries.values()), key="leakage-test-queries")
        train_emb = ctx.embed("baseline", [t for _, t in train_queries], key="leakage-train-queries")
    pairs = manifest_field(manifest, "pairs", []) or []
    train_docs = set(manifest_field(manifest, "doc_ids", []) or []) | {str(p[1]) for p in pairs}
    res = find_leaks(
        test_queries, ds.qrels, train_text_hashes=manifest_field(manifest, "query_texts_sha256", []) or [],
        train_doc_ids=train_docs, train_queries=train_queries, test_embeddings=test_emb, train_embeddings=train_emb,
        near_duplicate_cosine=cfg.near_duplicate_cosine, max_leaked_fraction=cfg.max_leaked_fraction,
    )
    clean = comparison_dict(
        base_t, cand_t, ctx.suite.retrieval.metrics, ctx.suite.retrieval.primary_metric, ds.queries,
        n_resamples=s.n_resamples, seed=s.seed, alpha=s.alpha, worst=0, exclude=res.leaked_query_ids,
    )
    clean.pop("per_query_delta", None)
    clean.pop("query_ids", None)
    case = lambda c: {k: getattr(c, k) for k in ("query_id", "query", "kind", "train_query_id", "train_query", "cosine")}  # noqa: E731
    verdict = "fail" if res.failed else "pass"
    return {
        "verdict": verdict,
        "headline": (
            f"{len(res.exact)} exact + {len(res.near)} near-duplicate (cos >= {cfg.near_duplicate_cosine}) of "
            f"{res.n_test_queries} test queries leaked ({res.leaked_fraction:.1%}, limit {cfg.max_leaked_fraction:.1%}); "
            f"{len(res.doc_overlap_queries)} test queries have relevant docs seen in training"
        ),
        "n_test_queries": res.n_test_queries,
        "exact_count": len(res.exact),
        "near_count": len(res.near),
        "leaked_fraction": res.leaked_fraction,
        "max_leaked_fraction": cfg.max_leaked_fraction,
        "near_duplicate_cosine": cfg.near_duplicate_cosine,
        "exact": [case(c) for c in res.exact[: cfg.max_cases]],
        "near": [case(c) for c in res.near[: cfg.max_cases]],
        "doc_overlap_queries": len(res.doc_overlap_queries),
        "doc_overlap_docs": res.doc_overlap_docs,
        "retrieval_without_leaked": clean,
        "notes": list(res.notes) + notes,
    }


def sts(ctx: Context) -> dict[str, Any]:
    s = ctx.suite
    sets = {}
    for item in s.sts.sets:
        loader = load_stsb if item.loader == "stsb" else load_sick
        pairs = loader(ctx.dataset_dir(item.dataset), item.split)
        if item.max_pairs and len(pairs) > item.max_pairs:
            pick = np.random.default_rng(s.seed).choice(len(pairs), item.max_pairs, replace=False)
            pairs = [pairs[i] for i in sorted(pick)]
        gold = np.array([p.score for p in pairs])
        cos = {}
        for role in ROLES:
            e1 = ctx.embed(role, [p.s1 for p in pairs], key=f"{item.dataset}-{item.split}-s1")
            e2 = ctx.embed(role, [p.s2 for p in pairs], key=f"{item.dataset}-{item.split}-s2")
            cos[role] = checks.cosine_rows(e1, e2)
        name = f"{item.dataset}/{item.split}"
        ctx.memo[("sts_pairs", name)] = pairs
        sets[name] = checks.sts_scores(gold, cos["baseline"], cos["candidate"], n_resamples=min(s.n_resamples, 1000),
                                       alpha=s.alpha, seed=s.seed)
    verdict = checks.combine_verdicts([v["verdict"] for v in sets.values()])
    head = "; ".join(
        f"{n} Spearman {v['baseline']['spearman']:.3f} -> {v['candidate']['spearman']:.3f} "
        f"(CI of diff [{v['spearman_delta_ci'][0]:+.3f}, {v['spearman_delta_ci'][1]:+.3f}])" for n, v in sets.items()
    )
    return {"verdict": verdict, "headline": head, "sets": sets}


def classification(ctx: Context) -> dict[str, Any]:
    cfg, s = ctx.suite.classification, ctx.suite
    path = ctx.dataset_dir(cfg.dataset)
    train, test = load_trec(path, cfg.train_split), load_trec(path, cfg.test_split)
    sampled = False
    if cfg.max_train and len(train) > cfg.max_train:
        from sklearn.model_selection import train_test_split

        train, _ = train_test_split(train, train_size=cfg.max_train, random_state=s.seed,
                                    stratify=[t.coarse for t in train])
        sampled = True
    tx = {r: ctx.embed(r, [t.text for t in train], key=f"{cfg.dataset}-{cfg.train_split}") for r in ROLES}
    ex = {r: ctx.embed(r, [t.text for t in test], key=f"{cfg.dataset}-{cfg.test_split}") for r in ROLES}
    out = checks.classification_scores(tx, [t.coarse for t in train], ex, [t.coarse for t in test], c=cfg.c,
                                       seed=s.seed, alpha=s.alpha)
    out["train_sampled"] = sampled
    b, c = out["baseline"], out["candidate"]
    out["headline"] = (
        f"{cfg.dataset} coarse: accuracy {b['accuracy']:.3f} -> {c['accuracy']:.3f} ({out['accuracy_delta']:+.3f}, "
        f"McNemar p={out['p_value']:.3g}); macro-F1 {b['macro_f1']:.3f} -> {c['macro_f1']:.3f}"
    )
    return out


def clustering(ctx: Context) -> dict[str, Any]:
    cfg, s = ctx.suite.clustering, ctx.suite
    items = load_trec(ctx.dataset_dir(cfg.dataset), cfg.split)
    if cfg.max_items and len(items) > cfg.max_items:
        pick = np.random.default_rng(s.seed).choice(len(items), cfg.max_items, replace=False)
        items = [items[i] for i in sorted(pick)]
    x = {r: ctx.embed(r, [t.text for t in items], key=f"{cfg.dataset}-{cfg.split}") for r in ROLES}
    out = checks.clustering_scores(x, [t.coarse for t in items], n_init=cfg.n_init, seed=s.seed)
    out["verdict"] = "info"
    out["headline"] = (
        f"k-means (k={out['k']}) on {cfg.dataset} {cfg.split}: V-measure {out['baseline']['v_measure']:.3f} -> "
        f"{out['candidate']['v_measure']:.3f}, ARI {out['baseline']['adjusted_rand']:.3f} -> "
        f"{out['candidate']['adjusted_rand']:.3f} (descriptive, no test)"
    )
    return out


def geometry_check(ctx: Context) -> dict[str, Any]:
    cfg, s = ctx.suite.geometry, ctx.suite
    ds = _in_domain(ctx)
    pairs_q = [(q, d) for q in sorted(ds.qrels) for d, g in sorted(ds.qrels[q].items()) if g > 0]
    sts_item = s.sts.sets[0] if s.sts.sets else None
    sts_pairs = []
    if sts_item is not None:
        loader = load_stsb if sts_item.loader == "stsb" else load_sick
        sts_pairs = [p for p in loader(ctx.dataset_dir(sts_item.dataset), sts_item.split) if p.score >= cfg.sts_min_score]
    out: dict[str, Any] = {"n_qrels_pairs": len(pairs_q), "n_sts_pairs": len(sts_pairs), "alpha": 2, "t": 2}
    for role in ROLES:
        doc_ids, docs = ctx.corpus_embeddings(role, ds)
        pos = {d: i for i, d in enumerate(doc_ids)}
        qs = ctx.embed(role, [ds.queries[q] for q, _ in pairs_q], key=f"{ds.name}-{ds.split}-qrel-queries")
        res = {
            "alignment_qrels": geometry.alignment(qs, docs[[pos[d] for _, d in pairs_q]]),
            "uniformity_corpus": geometry.uniformity(docs, max_points=2000, seed=s.seed),
            "anisotropy_corpus": geometry.anisotropy(docs, n_pairs=cfg.random_pairs, seed=s.seed),
        }
        if sts_pairs:
            a = ctx.embed(role, [p.s1 for p in sts_pairs], key="geometry-sts-s1")
            b = ctx.embed(role, [p.s2 for p in sts_pairs], key="geometry-sts-s2")
            res["alignment_sts"] = geometry.alignment(a, b)
            res["uniformity_sts"] = geometry.uniformity(np.vstack([a, b]), max_points=2000, seed=s.seed)
        out[role] = res
    b, c = out["baseline"], out["candidate"]
    out["verdict"] = "info"
    out["headline"] = (
        f"alignment(qrels) {b['alignment_qrels']:.3f} -> {c['alignment_qrels']:.3f}, uniformity "
        f"{b['uniformity_corpus']:.3f} -> {c['uniformity_corpus']:.3f}, anisotropy {b['anisotropy_corpus']:.3f} -> "
        f"{c['anisotropy_corpus']:.3f} (lower = better for all three)"
    )
    return out


def probes(ctx: Context) -> dict[str, Any]:
    cfg = ctx.suite.probes
    pairs = load_probes(cfg.file)
    emb = {r: (ctx.embed(r, [p.a for p in pairs], key="probes-a"), ctx.embed(r, [p.b for p in pairs], key="probes-b"))
           for r in ROLES}
    outcomes = score_probes(pairs, *emb["baseline"], *emb["candidate"], min_moved=cfg.min_moved)
    ok = sum(o.as_expected for o in outcomes)
    rows = [{"expectation": o.expectation, "a": o.a, "b": o.b, "cos_baseline": o.cos_baseline,
             "cos_candidate": o.cos_candidate, "delta": o.delta, "as_expected": o.as_expected} for o in outcomes]
    by_kind = {k: [r for r in rows if r["expectation"] == k] for k in ("closer", "apart")}
    return {
        "verdict": "pass" if ok * 2 > len(rows) else "warn",
        "headline": f"{ok}/{len(rows)} probe pairs moved as expected ("
        + ", ".join(f"{k}: {sum(r['as_expected'] for r in v)}/{len(v)}" for k, v in by_kind.items()) + ")",
        "file": str(cfg.file) if cfg.file else "packaged default (scifact_biomedical.tsv)",
        "n_pairs": len(rows), "as_expected": ok, "pairs": rows,
    }


def maps(ctx: Context) -> dict[str, Any]:
    cfg, s = ctx.suite.maps, ctx.suite
    items = load_trec(ctx.dataset_dir(cfg.dataset), cfg.split)
    if len(items) > cfg.sample:
        pick = np.random.default_rng(s.seed).choice(len(items), cfg.sample, replace=False)
        items = [items[i] for i in sorted(pick)]
    probe_pairs = load_probes(ctx.suite.probes.file) if ctx.suite.probes.enabled else []
    probe_texts = [p.a for p in probe_pairs] + [p.b for p in probe_pairs]
    out: dict[str, Any] = {"method": cfg.method, "dataset": f"{cfg.dataset}/{cfg.split}", "n_points": len(items),
                           "labels": [t.coarse for t in items], "texts": [t.text for t in items],
                           "probe_pairs": [[p.expectation, p.a, p.b] for p in probe_pairs]}
    for role in ROLES:
        x = ctx.embed(role, [t.text for t in items] + probe_texts, key=f"maps-{cfg.dataset}-{cfg.split}")
        coords = _project(x, cfg.method, s.seed)
        n = len(items)
        out[role] = {"points": coords[:n].round(4).tolist(), "probes": coords[n:].round(4).tolist()}
    out["verdict"] = "info"
    out["headline"] = f"{cfg.method.upper()} of {len(items)} {cfg.dataset} texts + {len(probe_texts)} probe texts, per model"
    return out


def _project(x: np.ndarray, method: str, seed: int) -> np.ndarray:
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    if method == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(n_components=2, perplexity=min(30.0, (len(x) - 1) / 3), init="pca", metric="cosine",
                    random_state=seed).fit_transform(x)
    with warnings.catch_warnings():
        # umap warns at import that TensorFlow (ParametricUMAP) is absent, and at fit about seeded single-threading
        warnings.simplefilter("ignore", ImportWarning)
        warnings.simplefilter("ignore", UserWarning)
        import umap

        return umap.UMAP(n_components=2, n_neighbors=min(15, len(x) - 1), min_dist=0.1, metric="cosine",
                         random_state=seed, n_jobs=1).fit_transform(x)


SECTIONS = {
    "retrieval": retrieval,
    "overfitting": overfitting,
    "leakage": leakage,
    "sts": sts,
    "classification": classification,
    "clustering": clustering,
    "geometry": geometry_check,
    "probes": probes,
    "maps": maps,
}
