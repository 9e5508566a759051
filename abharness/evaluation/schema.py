"""The JSON Schema (draft 2020-12) of ``report.json``, defined by the package and written beside every report.

Machines reading a report should validate it against this schema (``validate_report``); the ``schema_version``
field changes when a required field changes.
"""

from __future__ import annotations

from typing import Any

from abharness.errors import AbharnessError

__all__ = ["REPORT_SCHEMA", "SCHEMA_VERSION", "VERDICTS", "validate_report"]

SCHEMA_VERSION = 1
VERDICTS = ("improved", "regressed", "mixed", "no-change", "pass", "warn", "fail", "info", "skipped")

_num = {"type": ["number", "null"]}
_ci = {"type": "array", "items": _num, "minItems": 2, "maxItems": 2}
_pair = {
    "type": "object",
    "required": ["spearman", "spearman_ci", "pearson", "pearson_ci"],
    "properties": {"spearman": _num, "spearman_ci": _ci, "pearson": _num, "pearson_ci": _ci},
}
_metric_row = {
    "type": "object",
    "required": ["metric", "baseline", "candidate", "delta", "ci", "p_value", "p_holm", "wins", "ties", "losses",
                 "verdict"],
    "properties": {
        "metric": {"type": "string", "pattern": "^[a-z_]+@[0-9]+$"},
        "baseline": _num, "candidate": _num, "delta": _num, "ci": _ci,
        "p_value": {"type": "number", "minimum": 0, "maximum": 1},
        "p_holm": {"type": "number", "minimum": 0, "maximum": 1},
        "wins": {"type": "integer", "minimum": 0}, "ties": {"type": "integer", "minimum": 0},
        "losses": {"type": "integer", "minimum": 0},
        "verdict": {"enum": list(VERDICTS)},
    },
}
_retrieval = {
    "type": "object",
    "required": ["n_queries", "primary_metric", "metrics", "worst_queries"],
    "properties": {"metrics": {"type": "array", "items": _metric_row, "minItems": 1},
                   "worst_queries": {"type": "array", "items": {"type": "object",
                                     "required": ["query_id", "query", "baseline", "candidate", "delta"]}}},
}
_both = lambda fields: {  # noqa: E731 - small schema builder
    "type": "object", "required": list(fields), "properties": {f: _num for f in fields},
}


def _check(required: list[str], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {"verdict": {"enum": list(VERDICTS)}, "headline": {"type": "string"}}
    props.update(extra or {})
    return {
        "type": "object",
        "required": ["verdict", "headline"],
        "properties": props,
        # a skipped check carries only verdict + headline; a run check carries its numbers
        "if": {"properties": {"verdict": {"const": "skipped"}}},
        "else": {"required": required},
    }


REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://abharness.dev/schemas/evaluation-report-v1.json",
    "title": "abharness offline evaluation report",
    "type": "object",
    "required": ["schema_version", "created_at", "baseline", "candidate", "suite", "checks", "timings", "failed"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "created_at": {"type": "string"},
        "baseline": {"type": "object", "required": ["name", "fingerprint", "dim"]},
        "candidate": {"type": "object", "required": ["name", "fingerprint", "dim"]},
        "suite": {"type": "object"},
        "timings": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0}},
        "failed": {"type": "boolean"},
        "limit": {"type": ["integer", "null"], "minimum": 1,
                  "description": "evaluate --limit N: the data sets were cut to a slice; null = full data sets"},
        "checks": {
            "type": "object",
            "required": ["retrieval", "sts", "classification", "clustering", "geometry", "probes", "leakage",
                         "overfitting", "maps"],
            "additionalProperties": False,
            "properties": {
                "retrieval": _check(["n_queries", "metrics", "worst_queries", "primary_metric"], _retrieval["properties"]),
                "sts": _check(["sets"], {"sets": {"type": "object", "additionalProperties": {
                    "type": "object", "required": ["n_pairs", "baseline", "candidate", "spearman_delta_ci"],
                    "properties": {"baseline": _pair, "candidate": _pair, "spearman_delta_ci": _ci}}}}),
                "classification": _check(["baseline", "candidate", "p_value", "n_train", "n_test"], {
                    "baseline": _both(["accuracy", "macro_f1"]), "candidate": _both(["accuracy", "macro_f1"]),
                    "p_value": {"type": "number", "minimum": 0, "maximum": 1}}),
                "clustering": _check(["baseline", "candidate", "k"], {
                    "baseline": _both(["v_measure", "adjusted_rand"]),
                    "candidate": _both(["v_measure", "adjusted_rand"])}),
                "geometry": _check(["baseline", "candidate"], {
                    "baseline": _both(["alignment_qrels", "uniformity_corpus", "anisotropy_corpus"]),
                    "candidate": _both(["alignment_qrels", "uniformity_corpus", "anisotropy_corpus"])}),
                "probes": _check(["pairs", "n_pairs", "as_expected"], {"pairs": {"type": "array", "items": {
                    "type": "object", "required": ["expectation", "a", "b", "cos_baseline", "cos_candidate",
                                                   "as_expected"],
                    "properties": {"expectation": {"enum": ["closer", "apart"]}}}}}),
                "leakage": _check(["n_test_queries", "exact", "near", "leaked_fraction"], {
                    "leaked_fraction": {"type": "number", "minimum": 0, "maximum": 1},
                    "retrieval_without_leaked": _retrieval}),
                "overfitting": _check(["sets", "margin", "flagged", "in_domain_delta"], {
                    "sets": {"type": "object", "additionalProperties": {
                        "type": "object", "required": ["baseline", "candidate", "delta", "flagged"]}}}),
                "maps": _check(["method", "baseline", "candidate", "labels"], {
                    "method": {"enum": ["umap", "tsne"]},
                    "baseline": {"type": "object", "required": ["points", "probes"]},
                    "candidate": {"type": "object", "required": ["points", "probes"]}}),
            },
        },
    },
}


def validate_report(payload: dict[str, Any]) -> None:
    """Raise ``AbharnessError`` naming the first schema violation (a bug in the package, not user input)."""
    import jsonschema

    try:
        jsonschema.validate(payload, REPORT_SCHEMA, cls=jsonschema.Draft202012Validator)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise AbharnessError(f"evaluation report does not match its schema at {where}: {exc.message}") from exc
