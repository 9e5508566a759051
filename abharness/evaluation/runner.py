"""The evaluate use case: run the suite's checks for a baseline and a candidate encoder, write JSON + HTML.

``evaluate(baseline, candidate, suite, out_dir)`` takes encoders (or model specs, loaded with
``abharness.encoders.load_encoder``) and returns an ``EvaluationReport``; the CLI only parses, calls and renders.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from abharness.encoders.base import Encoder
from abharness.errors import ConfigError
from abharness.evaluation.context import Context
from abharness.evaluation.schema import REPORT_SCHEMA, SCHEMA_VERSION, validate_report
from abharness.evaluation.sections import SECTIONS
from abharness.evaluation.suite import CHECKS, Suite, load_suite

__all__ = ["EvaluationReport", "evaluate", "FAILING_VERDICTS"]

FAILING_VERDICTS = frozenset({"fail"})
# Order of execution: overfitting and leakage reuse the in-domain retrieval tables.
_ORDER = ("retrieval", "overfitting", "leakage", "sts", "classification", "clustering", "geometry", "probes", "maps")


@dataclass(frozen=True)
class EvaluationReport:
    """Everything the evaluation found. ``checks[name]`` holds ``verdict``, ``headline`` and the numbers."""

    baseline: dict[str, Any]
    candidate: dict[str, Any]
    suite: dict[str, Any]
    checks: dict[str, dict[str, Any]]
    timings: dict[str, float]
    created_at: str
    data_dir: str
    environment: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None  # evaluated on a slice (``evaluate --limit``); None = the full data sets

    @property
    def failed(self) -> bool:
        """True when a check fails loudly (leakage above its threshold)."""
        return any(c.get("verdict") in FAILING_VERDICTS for c in self.checks.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "created_at": self.created_at,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "data_dir": self.data_dir,
            "suite": self.suite,
            "checks": self.checks,
            "timings": self.timings,
            "environment": self.environment,
            "failed": self.failed,
            "limit": self.limit,
        }

    def to_json_dict(self) -> dict[str, Any]:
        """``to_dict`` with plain JSON values (numpy scalars as Python numbers, NaN as None): report.json."""
        return _jsonable(self.to_dict())

    def to_frame(self) -> Any:
        """One row per (check, metric) of the retrieval comparison plus one verdict row per check, as a pandas
        DataFrame with columns check, metric, baseline, candidate, delta, p_holm, verdict."""
        import pandas as pd

        rows: list[dict[str, Any]] = []
        for name, check in self.checks.items():
            for m in check.get("metrics", []) if isinstance(check.get("metrics"), list) else []:
                rows.append({"check": name, "metric": m.get("metric"), "baseline": m.get("baseline"),
                             "candidate": m.get("candidate"), "delta": m.get("delta"), "p_holm": m.get("p_holm"),
                             "verdict": check.get("verdict")})
            rows.append({"check": name, "metric": None, "baseline": None, "candidate": None, "delta": None,
                         "p_holm": None, "verdict": check.get("verdict")})
        return pd.DataFrame(rows, columns=["check", "metric", "baseline", "candidate", "delta", "p_holm", "verdict"])


def _model_info(enc: Encoder, spec: str | None) -> dict[str, Any]:
    return {"name": getattr(enc, "name", spec or "?"), "spec": spec or getattr(enc, "name", ""),
            "fingerprint": enc.fingerprint, "dim": int(enc.dim)}


def _load(model: Encoder | str) -> tuple[Encoder, str | None]:
    if isinstance(model, str):
        from abharness.encoders import load_encoder

        return load_encoder(model), model
    return model, None


def _read_manifest(spec: str | None) -> Any:
    if spec is None or spec in {"minilm"} or not Path(spec).is_dir():
        return None
    from abharness.finetune import read_manifest

    return read_manifest(spec)


def evaluate(
    baseline: Encoder | str,
    candidate: Encoder | str,
    suite: Suite | str | Path | None,
    out_dir: str | Path | None,
    *,
    data_dir: str | Path,
    manifest: Any = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    console: Console | None = None,
    render_html: bool = True,
    limit: int | None = None,
) -> EvaluationReport:
    """Run every enabled check of ``suite`` (a ``Suite``, a YAML path, or None for the default) comparing
    ``candidate`` against ``baseline``; write ``report.json``, ``report.schema.json`` and ``report.html`` under
    ``out_dir`` (skipped when None). ``manifest`` is the candidate's fine-tuning manifest; when None and the
    candidate is a model directory, it is read from there. ``limit`` records that ``suite`` was cut to a slice
    (``restrict_suite(suite, limit=N)``): the report carries it, so a sliced result is never read as a full one.
    Raises ``ConfigError``/``DataError``/``ModelError``."""
    suite_obj = suite if isinstance(suite, Suite) else load_suite(suite)
    data = Path(data_dir)
    if not data.is_dir():
        raise ConfigError(f"data folder {str(data)!r} does not exist; pass --data-root DIR holding scifact/, "
                          "cranfield/, ... (e.g. ../shared/data)")
    console = console or Console(stderr=True)
    started = time.perf_counter()
    for name in suite_obj.enabled_checks():  # fail before loading models or encoding when data are missing
        _preflight(suite_obj, data, name)
    base_enc, base_spec = _load(baseline)
    cand_enc, cand_spec = _load(candidate)
    if manifest is None:
        manifest = _read_manifest(cand_spec)
    ctx = Context(suite=suite_obj, data_dir=data, models={"baseline": base_enc, "candidate": cand_enc},
                  cache_dir=cache_dir, progress=progress, console=console, manifest=manifest)
    timings: dict[str, float] = {"load_models": time.perf_counter() - started}
    results: dict[str, dict[str, Any]] = {}
    enabled = [n for n in _ORDER if n in suite_obj.enabled_checks()]
    for i, name in enumerate(enabled, start=1):
        ctx.step(f"[{i}/{len(enabled)}] {name}")
        t0 = time.perf_counter()
        results[name] = SECTIONS[name](ctx)
        timings[name] = time.perf_counter() - t0
    for name in CHECKS:
        if name not in results:
            results[name] = {"verdict": "skipped", "headline": "disabled in the suite"}
    timings["total"] = time.perf_counter() - started
    report = EvaluationReport(
        baseline=_model_info(base_enc, base_spec),
        candidate={**_model_info(cand_enc, cand_spec), "has_manifest": manifest is not None},
        suite=suite_obj.model_dump(mode="json"),
        checks={n: results[n] for n in CHECKS},
        timings={k: round(v, 3) for k, v in timings.items()},
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        data_dir=str(data),
        environment={"python": platform.python_version(), "platform": platform.platform()},
        limit=limit,
    )
    payload = report.to_json_dict()
    validate_report(payload)
    if out_dir is not None:
        write_outputs(payload, Path(out_dir), render_html=render_html)
    return report


def write_outputs(payload: dict[str, Any], out: Path, *, render_html: bool = True) -> dict[str, Path]:
    """Write report.json, report.schema.json and (optionally) report.html + plotly.min.js into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "report.json", "schema": out / "report.schema.json"}
    files["json"].write_text(json.dumps(payload, indent=2, allow_nan=False), encoding="utf-8")
    files["schema"].write_text(json.dumps(REPORT_SCHEMA, indent=2), encoding="utf-8")
    if render_html:
        from abharness.report.evaluation import render_evaluation_html

        files["html"] = render_evaluation_html(payload, out)
    return files


def _jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars to Python, NaN/inf to None (JSON has no NaN)."""
    import math

    import numpy as np

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _preflight(s: Suite, data: Path, name: str) -> None:
    from abharness.errors import DataError

    needed: list[str] = []
    if name in {"retrieval", "leakage", "geometry"}:
        needed.append(s.retrieval.dataset)
    if name == "overfitting":
        needed += [s.retrieval.dataset] + [o.dataset for o in s.overfitting.sets]
    if name == "sts":
        needed += [x.dataset for x in s.sts.sets]
    if name == "geometry" and s.sts.sets:
        needed.append(s.sts.sets[0].dataset)
    if name in {"classification", "clustering", "maps"}:
        needed.append(getattr(s, name).dataset)
    for d in needed:
        if not (data / d).exists():
            raise DataError(
                f"data set {d!r} (needed by the {name} check) not found at {data / d}; pass --data-root DIR whose "
                f"sub-folders hold the data sets named in the suite, or disable the {name} check in the suite file"
            )
    if name == "probes":
        from abharness.evaluation.probes import load_probes

        load_probes(s.probes.file)
