"""``abharness model export --onnx``: an ONNX Runtime query encoder from a sentence-transformers model directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from abharness.errors import ConfigError

__all__ = ["register"]


def frontier_table(rows: list[dict], title: str) -> Table:
    """The variants tried: p50, speed-up over torch, agreement, pass/fail."""
    table = Table(title=title)
    for col in ("variant", "p50 ms", "speed-up", "top-10 overlap", "cosine mean", "cosine min", "gate"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for r in rows:
        if "error" in r:
            table.add_row(r["variant"], "-", "-", "-", "-", "-", f"[red]error[/] {escape(r['error'][:60])}")
            continue
        table.add_row(r["variant"], f"{r['p50_ms']:.2f}", f"{r['speedup']:.1f}x", f"{r['topk_overlap']:.3f}",
                      f"{r['cosine_mean']:.4f}", f"{r['cosine_min']:.4f}", "[green]pass[/]" if r["passes"] else "[red]fail[/]")
    return table


def export_command(
    model: Annotated[str, typer.Option(help="Source: 'minilm' (built in) or a sentence-transformers model directory.")],
    data: Annotated[Path, typer.Option(help="BEIR data directory: agreement is measured on its test queries.")],
    out: Annotated[Path, typer.Option(help="Output directory of the ONNX encoder.")],
    onnx: Annotated[bool, typer.Option("--onnx", help="Export to ONNX Runtime (the only format so far; required).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Only int8 variants (same as --precision int8).")] = False,
    precision: Annotated[str, typer.Option(help="auto (every variant), fp32 or int8.")] = "auto",
    variant: Annotated[Optional[list[str]], typer.Option(help="Try only these variants (repeatable).")] = None,
    min_overlap: Annotated[float, typer.Option(help="Gate: mean top-10 overlap with torch rankings.")] = 0.99,
    min_cosine: Annotated[float, typer.Option(help="Gate: mean cosine of query embeddings with torch.")] = 0.99,
    threads: Annotated[int, typer.Option(help="ONNX Runtime / torch threads while timing.")] = 1,
    reference_docs: Annotated[Optional[int], typer.Option(
        help="Rank against torch embeddings of a seeded sample of this many documents (judged ones kept) instead of "
             "the whole corpus, when torch has not encoded the corpus yet.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out directory.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the written manifest as JSON.")] = False,
) -> None:
    """Export MODEL to ONNX, measure each variant against torch on DATA's test queries, write the fastest that passes.

    Refuses (exit 2, nothing written) when no variant reaches both thresholds.
    """
    from abharness.export import export_onnx

    console = Console(soft_wrap=True, stderr=as_json)
    if not onnx:
        raise ConfigError("pass --onnx (the only export format); e.g. abharness model export --onnx --model minilm "
                          "--data DIR --out DIR")
    if int8 and precision not in {"auto", "int8"}:
        raise ConfigError(f"--int8 contradicts --precision {precision}; pass one of them")
    rows: list[dict] = []

    def show(row: dict) -> None:
        rows.append(row)
        gate = "error" if "error" in row else ("pass" if row["passes"] else "fail")
        detail = row.get("error") or (f"p50 {row['p50_ms']:.2f} ms, top-10 overlap {row['topk_overlap']:.3f}, "
                                      f"cosine {row['cosine_mean']:.4f}")
        console.print(f"  {row['variant']:<18} {escape(detail)}  {gate}")

    result = export_onnx(
        model, data, out, precision="int8" if int8 else precision, variants=variant or None,
        min_overlap=min_overlap, min_cosine=min_cosine, threads=threads, overwrite=overwrite, progress=progress,
        report=show, reference_docs=reference_docs,
    )
    m = result.manifest
    console.print(frontier_table(m.frontier, f"ONNX variants of {model} (torch p50 {result.torch_p50_ms:.2f} ms)"))
    console.print(f"[green]wrote[/] {out}  variant {m.variant}  fingerprint {m.fingerprint}  source {m.source_fingerprint}"
                  f"  top-10 overlap {m.agreement['topk_overlap']:.3f}  cosine {m.agreement['cosine_mean']:.4f}  "
                  f"p50 {m.agreement['p50_ms']:.2f} ms ({m.agreement['speedup']:.1f}x torch)")
    if as_json:
        typer.echo(json.dumps(m.to_dict(), indent=2))


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Export models (ONNX Runtime query encoders).", no_args_is_help=True)
    group.command("export")(export_command)
    app.add_typer(group, name="model")
