"""The demo's fast encoders: an ONNX Runtime export of each arm's model, used wherever its measured agreement allows.

For each model the demo exports the fused fp32 variant (``abharness model export --onnx --variant fp32-fused``),
measuring agreement with torch on the test queries against torch embeddings of a seeded sample of documents
(every judged one included), so the whole corpus is never encoded by torch. When the export passes the query gate
it serves that arm's queries; when it also passes the document gate it encodes the corpus for the index (which
still pins the torch model) and the offline evaluation. A refused export leaves the arm on torch, and says so.
Exports are reused while their source fingerprint matches the model directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FastEncoder", "fast_encoder"]

REFERENCE_DOCS = 1000


@dataclass
class FastEncoder:
    """What an arm uses: ``encoder`` for documents and evaluation, ``query_spec`` for the served backend."""

    encoder: Any
    query_spec: str
    note: str


def fast_encoder(spec: str, data_dir: Path, out: Path) -> FastEncoder:
    """Export (or reuse) the ONNX encoder of ``spec`` under ``out``; fall back to torch when the gate refuses."""
    from abharness.encoders import fingerprint_dir, load_encoder
    from abharness.encoders.st import check_model_spec
    from abharness.encoders.onnx import is_onnx_dir, load_onnx_encoder, read_onnx_manifest
    from abharness.export import ExportRefused, export_onnx

    source = check_model_spec(spec)
    fingerprint = fingerprint_dir(source) if source is not None else None
    if is_onnx_dir(out) and read_onnx_manifest(out).source_fingerprint == fingerprint:
        reused = True  # decided from the fingerprint alone: the torch model is not even loaded
    else:
        reused = False
        try:
            export_onnx(spec, data_dir, out, variants=["fp32-fused"], reference_docs=REFERENCE_DOCS, overwrite=True,
                        progress=True)
        except ExportRefused as exc:
            return FastEncoder(load_encoder(spec), spec, f"torch (ONNX export refused: {exc})")
    # documents and the evaluation come in large batches: use every core, as torch does
    onnx = load_onnx_encoder(out, threads=os.cpu_count() or 1)
    a = onnx.manifest.agreement
    figures = (f"{onnx.variant}: top-10 overlap {a['topk_overlap']:.3f}, doc cosine {a['doc_cosine_mean']:.5f}, "
               f"p50 {a['p50_ms']:.1f} ms vs torch {a['torch_p50_ms']:.1f} ms{' (reused)' if reused else ''}")
    if a.get("documents_pass"):
        return FastEncoder(onnx, str(out), f"ONNX for queries and documents ({figures})")
    return FastEncoder(load_encoder(spec), str(out), f"ONNX for queries only ({figures})")
