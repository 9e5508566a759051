"""``export_onnx``: a sentence-transformers model directory -> an ONNX Runtime encoder directory, gated on agreement.

Steps: load the torch model; encode the data set's corpus with it (cached, the same cache entry ``index build``
uses) and its test queries; export the transformer to ONNX once; build every candidate variant (fp32, fused
fp32, int8 kinds: ``abharness.export.variants``); for each, measure agreement with torch on the test queries
(cosine, top-k overlap against the torch document embeddings) and its single-query p50; keep the fastest
variant that meets both thresholds and write it. When no candidate passes, nothing is written and
``ExportRefused`` says which came closest. Every variant tried is recorded in the manifest's ``frontier``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from abharness.encoders.onnx import MANIFEST_FILE, SETTINGS_FILE, OnnxEncoder, OnnxManifest, onnx_fingerprint
from abharness.errors import ConfigError, ModelError
from abharness.export.agreement import agreement, latency_ms, topk_rows
from abharness.export.variants import FP32_VARIANTS, INT8_VARIANTS, VARIANTS, build_variant, export_fp32, model_geometry
from abharness.fsutil import atomic_directory

__all__ = ["ExportRefused", "ExportResult", "export_onnx", "candidate_variants", "PRECISIONS"]

PRECISIONS = ("auto", "fp32", "int8")


class ExportRefused(ModelError):
    """No ONNX variant met the agreement thresholds; nothing was written."""


@dataclass(frozen=True)
class ExportResult:
    out: Path
    manifest: OnnxManifest
    torch_p50_ms: float | None


def candidate_variants(precision: str, variants: Sequence[str] | None = None) -> list[str]:
    """The variants an export tries: ``variants`` when given, else all of ``precision`` (auto: fp32 and int8)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r}; valid: {', '.join(PRECISIONS)}")
    if variants:
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown:
            raise ConfigError(f"unknown ONNX variant(s) {', '.join(unknown)}; valid: {', '.join(VARIANTS)}")
        return list(dict.fromkeys(variants))
    return list({"auto": VARIANTS, "fp32": FP32_VARIANTS, "int8": INT8_VARIANTS}[precision])


def _st_settings(st_model: Any) -> dict[str, Any]:
    modules = [type(m).__name__ for m in st_model]
    if not modules or modules[0] != "Transformer" or len(modules) < 2 or modules[1] != "Pooling" or any(
        m not in {"Normalize"} for m in modules[2:]
    ):
        raise ModelError(
            f"modules {modules}: the ONNX export supports Transformer + Pooling (+ Normalize) models only"
        )
    cfg = st_model[1].get_config_dict()
    mode = cfg.get("pooling_mode")
    if mode is None:  # sentence-transformers < 5 spelled it as flags
        flags = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens"}
        on = [m for m, key in flags.items() if cfg.get(key)]
        mode = on[0] if len(on) == 1 else "+".join(on) or "none"
    if mode not in {"mean", "cls", "max"}:
        raise ModelError(f"pooling mode {mode!r} is not supported by the ONNX encoder (mean, cls, max)")
    tokenizer = st_model[0].tokenizer
    return {
        "pooling": mode, "normalize": "Normalize" in modules, "max_seq_length": int(st_model.max_seq_length),
        "pad_token_id": int(tokenizer.pad_token_id or 0), "pad_token": str(tokenizer.pad_token or "[PAD]"),
    }


def _write_candidate(directory: Path, onnx_file: Path, tokenizer: Any, settings: dict[str, Any],
                     manifest: dict[str, Any]) -> OnnxManifest:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_file, directory / "model.onnx")
    tokenizer.save_pretrained(str(directory))
    if not (directory / "tokenizer.json").is_file():
        raise ModelError("the model's tokenizer has no fast (tokenizer.json) form; the ONNX encoder needs one")
    (directory / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    full = OnnxManifest(fingerprint=onnx_fingerprint(directory), **manifest)
    (directory / MANIFEST_FILE).write_text(json.dumps(full.to_dict(), indent=2) + "\n", encoding="utf-8")
    return full


def _calibration_feeds(texts: Sequence[str], settings: dict[str, Any], tokenizer: Any, names: list[str]) -> list[dict]:
    # the calibrator concatenates activations across batches, so every batch has the same (padded) length
    feeds = []
    length = min(64, settings["max_seq_length"])
    for text in list(texts)[:200]:
        enc = tokenizer([text], truncation=True, max_length=length, padding="max_length", return_tensors="np")
        feeds.append({n: np.asarray(enc[n], dtype=np.int64) for n in names})
    return feeds


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    import onnxruntime
    import torch

    return {"abharness": version("abharness"), "onnxruntime": onnxruntime.__version__, "torch": torch.__version__}


def export_onnx(
    model: str,
    data: Path,
    out: Path,
    *,
    precision: str = "auto",
    variants: Sequence[str] | None = None,
    min_overlap: float = 0.99,
    min_cosine: float = 0.99,
    k: int = 10,
    threads: int = 1,
    overwrite: bool = False,
    progress: bool = True,
    report: Callable[[dict[str, Any]], None] | None = None,
    doc_sample: int = 300,
    reference_docs: int | None = None,
    measure_latency: bool = True,
) -> ExportResult:
    """Export ``model`` to ``out`` as the fastest variant whose agreement with torch on ``data``'s test queries meets
    ``min_overlap`` (mean top-k overlap) and ``min_cosine`` (mean cosine). ``report`` receives each frontier row.
    Each variant also encodes a seeded sample of ``doc_sample`` documents: their cosine with torch's, and the top-k
    overlap of the test queries (torch query embeddings) over the corpus with those rows replaced by the variant's,
    are recorded as ``doc_*`` and gate ``documents_pass`` (whether the export may encode documents too: it needs
    the query gate, that overlap, and the *minimum* document cosine above the thresholds).
    ``reference_docs``: rank against torch embeddings of a seeded sample of that many documents (every judged one
    included) instead of the whole corpus, when the corpus has not been encoded by torch yet and should not be.
    ``measure_latency=False`` skips the timing (the first passing variant of ``variants`` is written; no p50 is
    recorded); ``doc_sample=0`` skips the document measurement (``documents_pass`` is then false).
    Raises ``ExportRefused`` (nothing written) when no variant passes; ``ConfigError`` / ``ModelError`` otherwise."""
    import torch

    from abharness.data import load_beir
    from abharness.encoders.cache import encode_cached
    from abharness.encoders.st import load_encoder

    tried = candidate_variants(precision, variants)
    if not (0.0 < min_overlap <= 1.0 and -1.0 <= min_cosine <= 1.0):
        raise ConfigError(f"min_overlap={min_overlap}, min_cosine={min_cosine}: need 0 < overlap <= 1, -1 <= cosine <= 1")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} exists and is not empty; choose another --out or pass --overwrite")
    reference = load_encoder(model)
    if reference.source is None:
        raise ModelError(f"{model!r} is not a local model directory; pass 'minilm' or a sentence-transformers directory")
    settings = _st_settings(reference.model)
    dataset = load_beir(data, split="test")
    queries = list(dict.fromkeys(dataset.queries.values()))
    if not queries:
        raise ConfigError(f"{data}: the test split has no queries to measure agreement on")
    doc_ids = list(dataset.corpus)
    key = f"corpus-{dataset.corpus_hash[:16]}"
    if reference_docs is not None and reference_docs < len(doc_ids):
        # a seeded sample that keeps every document judged for a test query, so rankings still reach them
        judged = {d for rel in dataset.qrels.values() for d in rel if d in dataset.corpus}
        rest = [d for d in doc_ids if d not in judged]
        picked = np.random.default_rng(0).permutation(len(rest))[: max(0, reference_docs - len(judged))]
        doc_ids = sorted(judged) + [rest[i] for i in sorted(picked)]
        key = f"{key}-sample{len(doc_ids)}"
    doc_texts = [dataset.corpus[d].full_text for d in doc_ids]
    documents = encode_cached(reference, doc_texts, key=key, progress=progress, kind="document")
    sample = np.sort(np.random.default_rng(0).permutation(len(doc_ids))[:doc_sample])
    ref_queries = reference.encode(queries, batch_size=64, kind="query")
    tokenizer = reference.model[0].tokenizer
    base = {"source_fingerprint": reference.fingerprint, "source_name": str(model), "dim": reference.dim}
    frontier: list[dict[str, Any]] = []
    thresholds = {"min_topk_overlap": min_overlap, "min_cosine_mean": min_cosine, "k": k}
    with tempfile.TemporaryDirectory(prefix="abharness-onnx-") as tmp:
        work = Path(tmp)
        fp32 = work / "fp32.onnx"
        names = export_fp32(reference.source, fp32)
        train_queries = _train_queries(data) or queries
        built: dict[str, OnnxEncoder] = {}
        for variant in tried:
            file = work / f"out-{variant}.onnx"
            try:
                build_variant(variant, fp32, file, work=work, geometry=model_geometry(reference.model),
                              calibration=lambda: _calibration_feeds(train_queries, settings, tokenizer, names))
                cand_dir = work / f"cand-{variant}"
                _write_candidate(cand_dir, file, tokenizer, settings, {**base, "variant": variant})
                built[variant] = OnnxEncoder(cand_dir, threads=threads)
                agree = agreement(ref_queries, built[variant].encode(queries, batch_size=64), documents, k=k)
                docs = _document_agreement(built[variant], doc_texts, sample, documents, ref_queries, k)
                passes = agree.topk_overlap >= min_overlap and agree.cosine_mean >= min_cosine
                # swapping a sample of rows moves rankings less than re-encoding them all would, so documents also
                # need the query gate and every sampled document's cosine (not the mean) above the threshold
                frontier.append({"variant": variant, **agree.to_dict(), **docs, "bytes": file.stat().st_size,
                                 "passes": passes, "documents_pass": passes and docs["doc_n"] > 0
                                 and docs["doc_topk_overlap"] >= min_overlap and docs["doc_cosine_min"] >= min_cosine})
            except ModelError:
                raise
            except Exception as exc:  # noqa: BLE001 - a variant ORT cannot build is recorded, not fatal
                frontier.append({"variant": variant, "passes": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
        timing: dict[str, dict[str, float]] = {}
        if measure_latency:
            previous_threads = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                timing = latency_ms({"torch": reference, **built}, queries)
            finally:
                torch.set_num_threads(previous_threads)
        torch_p50 = timing["torch"]["p50_ms"] if timing else None
        for row in frontier:
            if row["variant"] in timing:
                t = timing[row["variant"]]
                row.update(t, speedup=round(torch_p50 / t["p50_ms"], 2))
            if report is not None:
                report(row)
        passing = [r for r in frontier if r["passes"]]
        if not passing:
            best = max((r for r in frontier if "topk_overlap" in r), key=lambda r: r["topk_overlap"], default=None)
            closest = (f"closest: {best['variant']} with top-{k} overlap {best['topk_overlap']:.3f}, cosine "
                       f"{best['cosine_mean']:.4f}" if best else "no variant could be built")
            raise ExportRefused(
                f"no ONNX variant of {model!r} agrees with torch on {len(queries)} test queries of {data} (needs top-{k} "
                f"overlap >= {min_overlap}, mean cosine >= {min_cosine}; {closest}); nothing written; try --precision "
                "fp32 or lower the thresholds knowingly"
            )
        chosen = min(passing, key=lambda r: r["p50_ms"]) if measure_latency else passing[0]
        meta = {
            **base, "variant": chosen["variant"],
            "agreement": {**{k_: chosen[k_] for k_ in chosen if k_ not in {"variant", "passes", "bytes"}},
                          "thresholds": thresholds, "data": str(data), "split": "test", "n_queries": len(queries),
                          "reference_docs": len(doc_ids),
                          "torch_p50_ms": torch_p50, "threads": threads},
            "frontier": frontier, "created_at": datetime.now(UTC).isoformat(timespec="seconds"), "versions": _versions(),
        }
        with atomic_directory(out) as target:
            manifest = _write_candidate(target, work / f"out-{chosen['variant']}.onnx", tokenizer, settings, meta)
    return ExportResult(out=out, manifest=manifest, torch_p50_ms=torch_p50)


def _document_agreement(candidate: OnnxEncoder, texts: list[str], sample: np.ndarray, documents: np.ndarray,
                        ref_queries: np.ndarray, k: int) -> dict[str, float]:
    """Cosine of the candidate's document embeddings with torch's on ``sample`` rows, and the top-k overlap of the
    torch queries over the corpus with those rows swapped for the candidate's."""
    if len(sample) == 0:
        return {"doc_n": 0, "doc_cosine_mean": 1.0, "doc_cosine_min": 1.0, "doc_topk_overlap": 1.0}
    mine = candidate.encode([texts[i] for i in sample], batch_size=32, kind="document")
    swapped = documents.copy()
    swapped[sample] = mine
    cos = np.sum(mine * documents[sample], axis=1) / np.clip(
        np.linalg.norm(mine, axis=1) * np.linalg.norm(documents[sample], axis=1), 1e-12, None)
    ref_top, new_top = topk_rows(ref_queries, documents, k), topk_rows(ref_queries, swapped, k)
    overlap = np.mean([len(set(a.tolist()) & set(b.tolist())) / ref_top.shape[1] for a, b in zip(ref_top, new_top)])
    return {"doc_n": len(sample), "doc_cosine_mean": round(float(cos.mean()), 6),
            "doc_cosine_min": round(float(cos.min()), 6), "doc_topk_overlap": round(float(overlap), 6)}


def _train_queries(data: Path) -> list[str]:
    from abharness.data import available_splits, load_beir

    if "train" not in available_splits(data):
        return []
    return list(dict.fromkeys(load_beir(data, split="train").queries.values()))
