"""``abharness serve`` (the A/B / interleaving proxy) and ``abharness index-server`` (one arm over HTTP).

Both run uvicorn on an app built by a factory (``create_app`` / ``create_index_server_app``); uvicorn turns SIGTERM
and SIGINT into a graceful shutdown, whose lifespan flushes every accepted event before the process exits.
"""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from abharness.errors import AbharnessError, ConfigError

__all__ = ["register", "run_uvicorn"]

EXIT_STARTUP_FAILED = 3  # start-up failed for a reason that is not an AbharnessError (a bug: traceback above)


class _StartupGuard:
    """Wraps an ASGI app so that an ``AbharnessError`` raised while its lifespan starts (an index built with
    another model, a missing model, an unreachable store) is kept for ``run_uvicorn`` to raise after uvicorn has
    given up, instead of uvicorn printing the traceback: the CLI then prints it as its one-line error.
    Other exceptions are bugs and keep their traceback."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.error: AbharnessError | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def guarded_send(message: Any) -> None:
            if message.get("type") == "lifespan.startup.failed":
                exc = sys.exc_info()[1]  # sent from inside the framework's `except` block
                if isinstance(exc, AbharnessError):
                    self.error = exc
                    message = {**message, "message": ""}  # no traceback: the CLI prints one line
            await send(message)

        try:
            await self.app(scope, receive, guarded_send)
        except AbharnessError as exc:
            self.error = self.error or exc
            raise


class _DropStartupFailed(logging.Filter):
    """Hide uvicorn's "Application startup failed. Exiting." when the reason will be printed as one line."""

    def __init__(self, guard: _StartupGuard) -> None:
        super().__init__()
        self.guard = guard

    def filter(self, record: logging.LogRecord) -> bool:
        return not (self.guard.error is not None and "startup failed" in record.getMessage())


def run_uvicorn(
    app: object, *, host: str, port: int, port_file: Path | None, log_level: str, http: str = "auto",
    access_log: bool = False, own_logging: bool = False,
) -> None:
    """Bind ``host:port`` (port 0 picks a free one, written to ``port_file``), then serve ``app`` until a signal.

    ``own_logging``: logging was configured by the caller (``configure_logging``), so uvicorn installs no handlers
    of its own. An ``AbharnessError`` raised by the app's start-up is re-raised here (no traceback printed)."""
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto is TCP; with
    # proto 0 every keep-alive response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"--host/--port {host}:{port}: cannot bind ({exc.strerror or exc}); choose another "
                          "--port (0 picks a free one)") from None
    actual = sock.getsockname()[1]
    guard = _StartupGuard(app)
    extra: dict[str, Any] = {"log_config": None} if own_logging else {}
    config = uvicorn.Config(
        guard,
        log_level=log_level,
        http=http,  # "auto": httptools when installed (uvicorn[standard]), else the pure-Python h11
        lifespan="on",
        timeout_graceful_shutdown=30,
        access_log=access_log,
        **extra,
    )
    server = uvicorn.Server(config)
    startup_filter = _DropStartupFailed(guard)
    logging.getLogger("uvicorn.error").addFilter(startup_filter)
    if port_file is not None:
        tmp = port_file.with_suffix(port_file.suffix + ".tmp")
        tmp.write_text(str(actual))
        tmp.replace(port_file)
    if own_logging:  # one format on stderr (a JSON line with --log-format json)
        logging.getLogger("abharness.serve").info("listening on http://%s:%d", host, actual)
    else:
        Console(stderr=True, soft_wrap=True).print(f"listening on http://{host}:{actual}")
    try:
        server.run(sockets=[sock])
    except SystemExit:  # uvicorn exits with 3 when the lifespan's start-up fails
        if guard.error is None:
            raise
    finally:
        sock.close()
        logging.getLogger("uvicorn.error").removeFilter(startup_filter)
    if not server.started:
        if guard.error is not None:
            raise guard.error
        raise typer.Exit(EXIT_STARTUP_FAILED)


def _check_log_format(log_format: str) -> None:
    from abharness.observability.logs import LOG_FORMATS

    if log_format not in LOG_FORMATS:
        raise ConfigError(f"--log-format {log_format!r}: not a log format; valid: {', '.join(LOG_FORMATS)}")


def _check_remote_control(cfg: object) -> None:
    """Control served by an index server that does not answer is an error before binding (one line, exit 2); a
    treatment that does not answer is not: the proxy starts, serves control and reconnects the arm."""
    from abharness.backends.factory import open_arm_backend
    from abharness.config import RemoteBackendConfig

    control = cfg.control  # type: ignore[attr-defined]
    if isinstance(cfg.arm(control).backend, RemoteBackendConfig):  # type: ignore[attr-defined]
        open_arm_backend(cfg, control).close()  # type: ignore[arg-type]


def serve_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="Experiment YAML (see examples/experiment.yaml).")],
    host: Annotated[Optional[str], typer.Option(help="Bind address (default: the config's host).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port (default: the config's port; 0 picks a free one).")] = None,
    port_file: Annotated[Optional[Path], typer.Option(help="Write the bound port to this file once listening.")] = None,
    insecure_dev: Annotated[bool, typer.Option(
        "--insecure-dev", help="Accept empty/default admin_token and token_secret (local development only).")] = False,
    log_level: Annotated[str, typer.Option(help="Log level: debug, info, warning, error.")] = "info",
    log_format: Annotated[str, typer.Option(help="Log lines as 'text' or 'json' (one object per line).")] = "text",
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log",
                                             help="Log one line per HTTP request.")] = True,
) -> None:
    """Serve the A/B / interleaving / shadow proxy for the experiment in CONFIG. SIGTERM flushes the event log.
    Paths in CONFIG (indexes, model directories, an SQLite store) are relative to the config file."""
    from abharness.api.app import create_app
    from abharness.config import check_paths, load_config
    from abharness.config_layers import refuse_unserved
    from abharness.observability.logs import configure_logging

    _check_log_format(log_format)
    cfg = load_config(config, insecure_dev=True if insecure_dev else None)
    refuse_unserved(cfg)
    check_paths(cfg)
    _check_remote_control(cfg)
    configure_logging(log_level, log_format)
    if cfg.insecure_dev:
        logging.getLogger("abharness.proxy").warning("insecure development mode: do not expose this server")
    run_uvicorn(create_app(cfg), host=host or cfg.host, port=cfg.port if port is None else port,
                port_file=port_file, log_level=log_level, access_log=access_log, own_logging=True)


def index_server_command(
    index: Annotated[Path, typer.Option(help="Index directory built by `abharness index build`.")],
    model: Annotated[Optional[str], typer.Option(
        help="Encoder spec ('minilm' or a model dir); default: the model recorded in the index.")] = None,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = 8100,
    port_file: Annotated[Optional[Path], typer.Option(help="Write the bound port to this file once listening.")] = None,
    max_batch: Annotated[int, typer.Option(help="Largest micro-batch of concurrent queries.")] = 32,
    max_wait_ms: Annotated[float, typer.Option(
        help="How long a micro-batch may wait to fill (0: none; batches form while one encodes).")] = 0.0,
    log_level: Annotated[str, typer.Option(help="Log level: debug, info, warning, error.")] = "info",
    log_format: Annotated[str, typer.Option(help="Log lines as 'text' or 'json' (one object per line).")] = "text",
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log",
                                             help="Log one line per HTTP request.")] = True,
) -> None:
    """Serve one arm's FAISS index + encoder over HTTP, for a proxy arm with `backend: {kind: remote, url: ...}`."""
    from abharness.api.index_server import create_index_server_app
    from abharness.backends.local import open_local_backend
    from abharness.encoders import check_model_spec
    from abharness.index import read_index_manifest
    from abharness.observability.logs import configure_logging

    _check_log_format(log_format)
    read_index_manifest(index)  # a missing or foreign directory fails here, before the port is bound
    if model is not None:
        check_model_spec(model, option="--model")
    configure_logging(log_level, log_format)
    app = create_index_server_app(
        opener=lambda: open_local_backend(index, model, max_batch=max_batch, max_wait_ms=max_wait_ms)
    )
    run_uvicorn(app, host=host, port=port, port_file=port_file, log_level=log_level, access_log=access_log,
                own_logging=True)


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``index-server`` to the ``abharness`` CLI."""
    app.command("serve")(serve_command)
    app.command("index-server")(index_server_command)


if __name__ == "__main__":  # pragma: no cover - `python -m abharness.cli.serve serve ...`
    from abharness.cli.main import main

    main(sys.argv[1:])
