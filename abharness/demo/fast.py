"""The demo's fast query encoders: an ONNX Runtime export of each arm's model serves that arm's queries.

After both indexes are built with the torch models (their corpus embeddings are then in the cache), each model is
exported as fused fp32 (``export_onnx(..., variants=["fp32-fused"])``), its agreement with torch measured on the test
queries against the full cached corpus embeddings (no timing, no document sample: the demo only needs the gate).
An export that passes serves the arm's queries; documents and the offline evaluation stay with torch, since
``loadtest/bench_encoder.py --documents`` measured no gain for long documents (docs/performance.md). A refused
export leaves the arm on torch, and says so. Exports are reused while their source fingerprint matches the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FastEncoder", "fast_encoder"]

@dataclass
class FastEncoder:
    """What an arm uses: ``encoder`` (torch) for documents and evaluation, ``query_spec`` for the served backend."""

    encoder: Any
    query_spec: str
    note: str


def fast_encoder(spec: str, torch_model: Any, data_dir: Path, out: Path) -> FastEncoder:
    """Export (or reuse) the ONNX query encoder of ``spec`` under ``out``; fall back to torch when the gate refuses."""
    from abharness.encoders.onnx import is_onnx_dir, read_onnx_manifest
    from abharness.export import ExportRefused, export_onnx

    reused = is_onnx_dir(out) and read_onnx_manifest(out).source_fingerprint == torch_model.fingerprint
    if not reused:
        try:
            export_onnx(spec, data_dir, out, variants=["fp32-fused"], overwrite=True, progress=True, doc_sample=0,
                        measure_latency=False)
        except ExportRefused as exc:
            return FastEncoder(torch_model, spec, f"torch (ONNX export refused: {exc})")
    a = read_onnx_manifest(out).agreement
    return FastEncoder(torch_model, str(out), f"ONNX {read_onnx_manifest(out).variant} for queries (top-10 overlap "
                       f"{a['topk_overlap']:.3f}, cosine {a['cosine_mean']:.5f}{', reused' if reused else ''})")
