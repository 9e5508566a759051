"""``abharness evaluate``: offline before/after evaluation of a candidate embedding model against a baseline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.text import Text

from abharness.errors import AbharnessError

__all__ = ["register", "EXIT_CHECK_FAILED"]

EXIT_CHECK_FAILED = 1
EXIT_USAGE_ERROR = 2


def evaluate_command(
    baseline: Annotated[str, typer.Option(help="Baseline model: 'minilm' (built in) or a sentence-transformers dir.")],
    candidate: Annotated[str, typer.Option(help="Candidate model: a model dir (e.g. the --out of `abharness finetune`).")],
    out: Annotated[Path, typer.Option(help="Output directory for report.html, report.json, report.schema.json.")],
    data: Annotated[Optional[Path], typer.Option(
        help="Directory whose sub-folders hold the data sets named in the suite (scifact/, cranfield/, cisi/, "
             "stsbenchmark/, sick/, trec_qc/). Default: $ABHARNESS_DATA.")] = None,
    suite: Annotated[Optional[Path], typer.Option(help="Suite YAML (checks, data sets, thresholds); default suite if omitted.")] = None,
    only: Annotated[Optional[str], typer.Option(help="Comma-separated checks to run (others skipped), e.g. 'retrieval,sts'.")] = None,
    html: Annotated[bool, typer.Option("--html/--no-html", help="Write the HTML report.")] = True,
    progress: Annotated[bool, typer.Option("--progress/--quiet", help="Show progress bars and step lines.")] = True,
) -> None:
    """Compare CANDIDATE against BASELINE: retrieval (with paired tests), STS, classification, clustering,
    geometry, probe pairs, leakage, out-of-domain overfitting and embedding maps. Prints one verdict line per check.
    Exit 0 when no check fails, 1 when a check fails (leakage above its threshold), 2 on a usage/data/model error."""
    from abharness.errors import ConfigError
    from abharness.evaluation import CHECKS, evaluate, load_suite
    from abharness.evaluation.summary import print_summary

    console = Console(stderr=True)
    out_console = Console()
    try:
        data_dir = data or (Path(os.environ["ABHARNESS_DATA"]) if os.environ.get("ABHARNESS_DATA") else None)
        if data_dir is None:
            raise ConfigError("no data directory: pass --data DIR (holding scifact/, cranfield/, ...) or set ABHARNESS_DATA")
        suite_obj = load_suite(suite)
        if only:
            wanted = {c.strip() for c in only.split(",") if c.strip()}
            unknown = wanted - set(CHECKS)
            if unknown:
                raise ConfigError(f"--only {only!r}: unknown check(s) {', '.join(sorted(unknown))}; valid: {', '.join(CHECKS)}")
            updates = {name: getattr(suite_obj, name).model_copy(update={"enabled": name in wanted}) for name in CHECKS}
            suite_obj = suite_obj.model_copy(update=updates)
        report = evaluate(baseline, candidate, suite_obj, out, data_dir=data_dir, progress=progress, console=console,
                          render_html=html)
    except AbharnessError as exc:
        console.print(Text.assemble(("error: ", "bold red"), str(exc)), highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE_ERROR) from exc
    print_summary(report.to_dict(), out_console, out_dir=str(out))
    if report.failed:
        raise typer.Exit(EXIT_CHECK_FAILED)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)
