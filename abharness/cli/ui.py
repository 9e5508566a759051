"""``abharness ui``: serve the live, read-only results page of every experiment in an event store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from abharness.errors import ConfigError

__all__ = ["register"]
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def ui_command(
    store: Annotated[str, typer.Option(help="Event store URL, e.g. sqlite:///events.db or postgresql://...")],
    host: Annotated[str, typer.Option(help="Bind address (loopback by default: the pages are not authenticated).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one, see --port-file).")] = 8050,
    port_file: Annotated[Path | None, typer.Option(help="Write the bound port here (useful with --port 0).")]
    = None,
    refresh: Annotated[float, typer.Option(help="Seconds between page reloads and between analyses of an "
                                                "experiment.")] = 30.0,
    bootstrap: Annotated[int, typer.Option(help="Cluster-bootstrap resamples per analysis (0 = off).")] = 0,
    timeseries_points: Annotated[int, typer.Option(help="Looks in the cumulative-lift chart.")] = 8,
    segment: Annotated[str | None, typer.Option(help="Break every experiment down by this context attribute.")]
    = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Live results pages (decision, SRM, lifts with fixed and always-valid intervals, lift over time, traffic
    per day, power, interleaving, segments, the current allocation and the audit log) for each experiment in
    --store, reloading every --refresh seconds. Read-only; binds 127.0.0.1 unless --host says otherwise."""
    from abharness.analysis import AnalysisOptions, analyze
    from abharness.api.ui import create_ui_app
    from abharness.cli.serve import run_uvicorn
    from abharness.library import open_store

    err = Console(stderr=True, soft_wrap=True)
    if refresh <= 0:
        raise ConfigError(f"--refresh {refresh}: must be a positive number of seconds (e.g. 30)")
    options = AnalysisOptions(bootstrap_samples=bootstrap, timeseries_points=timeseries_points).validated()
    st = open_store(store)  # read-only: never creates or migrates
    if host not in _LOOPBACK:
        err.print(f"[yellow]warning:[/] binding {host}: the results pages have no authentication", highlight=False)
    try:
        app = create_ui_app(st, analyze=lambda s, e: analyze(s, e, segment=segment, options=options),
                            refresh_s=refresh)
        run_uvicorn(app, host=host, port=port, port_file=port_file, log_level=log_level)
    finally:
        st.close()


def register(app: typer.Typer) -> None:
    """Add ``ui`` to the ``abharness`` command."""
    app.command("ui", help=ui_command.__doc__)(ui_command)
