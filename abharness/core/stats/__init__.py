"""Pure statistics engine for online experiments: numbers (sufficient statistics) in, frozen results out.

No I/O, no clock, no environment. Modules:

- ``moments``: per-unit sufficient statistics (n, sums, cross-products), mergeable with ``+``.
- ``metrics``: the table of ratio metrics (CTR, MRR of clicks, success@k, ...) and guardrails with margins.
- ``ratio``: delta-method ratio tests clustered by unit, CUPED, relative lift (vectorised).
- ``compare``: one metric, treatment vs control, as a frozen ``MetricComparison``; non-inferiority.
- ``sequential``: mSPRT always-valid p-values and confidence sequences.
- ``srm``: sample-ratio mismatch.
- ``bootstrap``: unit-level (cluster) bootstrap cross-check.
- ``multiple``: Holm and Benjamini-Hochberg.
- ``power``: sample size, MDE, days still needed.
- ``decision``: ship / keep-running / rollback.
"""

from __future__ import annotations

from abharness.core.stats.bootstrap import BootstrapResult, cluster_bootstrap
from abharness.core.stats.compare import ArmEstimate, MetricComparison, NonInferiority, compare_metric
from abharness.core.stats.decision import EXIT_CODES, Decision, decide
from abharness.core.stats.metrics import (
    BASE_COLUMNS,
    GUARDRAIL_METRICS,
    ONLINE_METRICS,
    OUTCOME_METRICS,
    OnlineMetricSpec,
    parse_online_metrics,
)
from abharness.core.stats.moments import Moments
from abharness.core.stats.multiple import benjamini_hochberg, holm
from abharness.core.stats.power import (
    CtrPlan,
    ctr_plan,
    days_still_needed,
    mde,
    one_sample_mde,
    one_sample_required_units,
    power_at,
    required_units,
)
from abharness.core.stats.ratio import RatioDiff, TestOutcome, ratio_diff, ratio_estimate, wald_test
from abharness.core.stats.sequential import SequentialOutcome, msprt, running_min
from abharness.core.stats.srm import SRM_ALARM_P, SRMResult, srm_test

__all__ = [
    "ArmEstimate", "BASE_COLUMNS", "BootstrapResult", "CtrPlan", "Decision", "EXIT_CODES", "GUARDRAIL_METRICS",
    "ONLINE_METRICS", "MetricComparison", "OnlineMetricSpec", "Moments", "NonInferiority",
    "OUTCOME_METRICS", "RatioDiff", "SRMResult", "SRM_ALARM_P", "SequentialOutcome", "TestOutcome",
    "benjamini_hochberg", "cluster_bootstrap", "compare_metric", "ctr_plan", "days_still_needed", "decide", "holm",
    "mde", "msprt", "one_sample_mde", "one_sample_required_units", "parse_online_metrics",
    "power_at", "ratio_diff", "ratio_estimate", "required_units", "running_min", "srm_test", "wald_test",
]
