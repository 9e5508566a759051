"""``abharness evaluate``: offline before/after evaluation of a candidate embedding model against a baseline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

__all__ = ["register"]


def evaluate_command(
    baseline: Annotated[str, typer.Option(help="Baseline model: 'minilm' (built in) or a sentence-transformers dir.")],
    candidate: Annotated[str, typer.Option(help="Candidate model: a model dir (e.g. the --out of `abharness finetune`).")],
    out: Annotated[Path, typer.Option(help="Output directory for report.html, report.json, report.schema.json.")],
    data_root: Annotated[Optional[Path], typer.Option(
        "--data-root",
        help="Folder whose sub-folders hold the data sets named in the suite (scifact/, cranfield/, cisi/, "
             "stsbenchmark/, sick/, trec_qc/), e.g. ../shared/data. Default: $ABHARNESS_DATA, else ../shared/data, "
             "else the copies fetched into the user cache (`abharness data fetch all`), fetched now if missing.")] = None,
    suite: Annotated[Optional[Path], typer.Option(help="Suite YAML (checks, data sets, thresholds); default suite if omitted.")] = None,
    only: Annotated[Optional[str], typer.Option(help="Comma-separated checks to run (others skipped), e.g. 'retrieval,sts'.")] = None,
    limit: Annotated[Optional[int], typer.Option(
        min=20, help="Evaluate a slice: N judged queries (+ their documents and 10*N others) per retrieval set, at "
                     "most N items per other check. Recorded in report.json as a slice.")] = None,
    html: Annotated[bool, typer.Option("--html/--no-html", help="Write the HTML report.")] = True,
    progress: Annotated[bool, typer.Option("--progress/--quiet", help="Show progress bars and step lines.")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print report.json on stdout instead of the verdict lines.")] = False,
) -> None:
    """Compare CANDIDATE against BASELINE: retrieval (with paired tests), STS, classification, clustering,
    geometry, probe pairs, leakage, out-of-domain overfitting and embedding maps. Prints one verdict line per check.
    Exit 0 when no check fails, 1 when a check fails (leakage above its threshold), 2 on a usage/data/model error."""
    from abharness.cli.main import EXIT_CHECK_FAILED
    from abharness.data.public import find_data_root
    from abharness.encoders import check_model_spec
    from abharness.evaluation import evaluate, load_suite, restrict_suite
    from abharness.evaluation.summary import print_summary

    # Both model specs are checked before anything is loaded or encoded (or downloaded).
    check_model_spec(baseline, option="--baseline")
    check_model_spec(candidate, option="--candidate")
    suite_obj = restrict_suite(load_suite(suite), only=only, limit=limit)
    data_dir = find_data_root(data_root, _suite_datasets(suite_obj), progress=progress and not json_out)
    report = evaluate(baseline, candidate, suite_obj, out, data_dir=data_dir, progress=progress and not json_out,
                      console=Console(stderr=True), render_html=html, limit=limit)
    if json_out:
        typer.echo(json.dumps(report.to_json_dict(), indent=2, allow_nan=False))
    else:
        print_summary(report.to_dict(), Console(), out_dir=str(out))
    if report.failed:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _suite_datasets(suite: Any) -> list[str]:
    """The public data sets the enabled checks of ``suite`` read (what to look for, or fetch)."""
    from abharness.data.public import PUBLIC_DATASETS

    found: list[str] = []
    for name in suite.enabled_checks():
        section = getattr(suite, name).model_dump()
        found += [section["dataset"]] if "dataset" in section else []
        found += [s["dataset"] for s in section.get("sets", ())]
    if {"leakage", "overfitting"} & set(suite.enabled_checks()):
        found.append(suite.retrieval.dataset)
    return [d for d in dict.fromkeys(found) if d in PUBLIC_DATASETS]


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)
