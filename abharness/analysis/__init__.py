"""The analyze use case: reads per-unit aggregates through the ``EventStore`` Protocol and runs the pure
statistics core (:mod:`abharness.core.stats`)."""

from __future__ import annotations

from abharness.analysis.options import AnalysisOptions, PrePeriod
from abharness.analysis.report import AnalysisReport, CupedSummary, PowerSummary, SegmentBreakdown, TimePoint
from abharness.analysis.usecase import analyze

__all__ = ["analyze", "AnalysisOptions", "PrePeriod", "AnalysisReport", "CupedSummary", "PowerSummary",
           "SegmentBreakdown", "TimePoint"]
