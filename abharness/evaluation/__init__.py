"""Offline before/after evaluation of a fine-tuned embedding model (retrieval, STS, classification, clustering,
geometry, probes, leakage, overfitting, embedding maps) with a JSON + HTML report."""

from __future__ import annotations

from abharness.evaluation.runner import EvaluationReport, evaluate, write_outputs
from abharness.evaluation.schema import REPORT_SCHEMA, validate_report
from abharness.evaluation.suite import CHECKS, Suite, load_suite, restrict_suite

__all__ = ["evaluate", "EvaluationReport", "write_outputs", "Suite", "load_suite", "restrict_suite", "CHECKS", "REPORT_SCHEMA",
           "validate_report"]
