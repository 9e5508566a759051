"""The ``abharness`` command line: a thin skin over the use cases. It parses, calls, renders, and turns
``AbharnessError`` into a one-line message and a non-zero exit code (never a traceback).

Each command module exposes ``register(app: typer.Typer) -> None`` and is listed in ``COMMAND_MODULES``.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console

from abharness.errors import AbharnessError

__all__ = ["build_app", "main", "COMMAND_MODULES"]

# Add a module here when it gains commands; each must define register(app).
COMMAND_MODULES: list[str] = [
    "evaluate", "serve", "analyze", "replay", "simulate", "demo", "finetune", "index", "data", "spool", "model", "ui",
]

EXIT_USAGE_ERROR = 2


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="abharness",
        help="Did fine-tuning help? Offline evaluation, an online A/B + interleaving proxy, honest statistics, replay.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for name in COMMAND_MODULES:
        importlib.import_module(f"abharness.cli.{name}").register(app)
    return app


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    app = build_app()
    try:
        app(args=argv, standalone_mode=True)
    except AbharnessError as exc:  # pragma: no cover - typer exits via SystemExit normally
        Console(stderr=True).print(f"[bold red]error:[/] {exc}")
        sys.exit(EXIT_USAGE_ERROR)
