"""The ``abharness`` command line: a thin skin over the use cases. It parses, calls, renders, and turns
``AbharnessError`` into a one-line message and a non-zero exit code (never a traceback).

That translation happens in exactly one place, ``AbharnessGroup.invoke`` below, which wraps every command and
sub-command; command modules simply let ``AbharnessError`` propagate. Exit codes:

    0   success (``analyze``: ship)
    1   the command ran and found a failure (``evaluate``: a check failed; ``simulate``: HTTP errors)
    2   usage, configuration, data or model error (any ``AbharnessError``, and click's own usage errors)
    10  ``analyze``: keep-running
    20  ``analyze``: rollback

Each command module exposes ``register(app: typer.Typer) -> None`` and is listed in ``COMMAND_MODULES``.
"""

from __future__ import annotations

import importlib
import logging
from typing import Annotated, Any, Optional

import click
import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from abharness.errors import AbharnessError

__all__ = ["build_app", "main", "COMMAND_MODULES", "EXIT_USAGE_ERROR", "EXIT_CHECK_FAILED", "AbharnessGroup",
           "print_error"]

# Add a module here when it gains commands; each must define register(app).
COMMAND_MODULES: list[str] = [
    "evaluate", "serve", "analyze", "replay", "simulate", "demo", "finetune", "index", "data", "spool", "model", "ui",
    "ubi", "export", "ingest",
]

EXIT_USAGE_ERROR = 2
EXIT_CHECK_FAILED = 1


def print_error(error: AbharnessError | str) -> None:
    """The one ``error: ...`` line on stderr (soft-wrapped: a terminal wraps it visually, a log keeps it whole)."""
    message = (str(error).strip() or type(error).__name__).replace("\n", " ")
    Console(stderr=True, soft_wrap=True, highlight=False).print(Text.assemble(("error: ", "bold red"), message))


class AbharnessGroup(TyperGroup):
    """The root command group: the single place where ``AbharnessError`` becomes a message and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AbharnessError as exc:
            logging.getLogger("abharness.cli").debug("command failed", exc_info=exc)
            print_error(exc)
            raise typer.Exit(EXIT_USAGE_ERROR) from None


def _version_callback(value: bool) -> None:
    if value:
        from abharness import __version__

        typer.echo(f"abharness {__version__}")
        raise typer.Exit(0)


def _root(
    version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_version_callback, is_eager=True, help="Print the version and exit.")] = None,
) -> None:
    """Did fine-tuning help? Offline evaluation, an online A/B + interleaving proxy, honest statistics, replay.

    Models load offline: a name that is neither 'minilm' nor a model directory is an error, never a download
    (set ABHARNESS_ALLOW_DOWNLOAD=1 to load hub ids). Shell completion: --install-completion.
    """


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="abharness",
        cls=AbharnessGroup,
        no_args_is_help=True,
        add_completion=True,
        pretty_exceptions_enable=False,
        callback=_root,
    )
    for name in COMMAND_MODULES:
        importlib.import_module(f"abharness.cli.{name}").register(app)
    return app


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    build_app()(args=argv, prog_name="abharness", standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover - `python -m abharness.cli.main ...`
    main()
