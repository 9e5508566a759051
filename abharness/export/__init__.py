"""Model export: a sentence-transformers model -> an ONNX Runtime encoder, written only when it agrees with torch."""

from __future__ import annotations

from abharness.export.agreement import Agreement, agreement, latency_ms
from abharness.export.usecase import PRECISIONS, ExportRefused, ExportResult, candidate_variants, export_onnx
from abharness.export.variants import FP32_VARIANTS, INT8_VARIANTS, VARIANTS

__all__ = [
    "export_onnx",
    "ExportRefused",
    "ExportResult",
    "candidate_variants",
    "agreement",
    "Agreement",
    "latency_ms",
    "VARIANTS",
    "FP32_VARIANTS",
    "INT8_VARIANTS",
    "PRECISIONS",
]
