"""``abharness serve`` (the A/B / interleaving proxy) and ``abharness index-server`` (one arm over HTTP).

Both run uvicorn on an app built by a factory (``create_app`` / ``create_index_server_app``); uvicorn turns SIGTERM
and SIGINT into a graceful shutdown, whose lifespan flushes every accepted event before the process exits.
"""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from abharness.errors import AbharnessError

__all__ = ["register", "run_uvicorn"]

EXIT_USAGE_ERROR = 2


def run_uvicorn(
    app: object, *, host: str, port: int, port_file: Path | None, log_level: str, http: str = "auto"
) -> None:
    """Bind ``host:port`` (port 0 picks a free one, written to ``port_file``), then serve ``app`` until a signal."""
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
        raise typer.BadParameter(f"cannot bind {host}:{port} ({exc}); choose another --port") from None
    actual = sock.getsockname()[1]
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        log_level=log_level,
        http=http,  # "auto": httptools when installed (uvicorn[standard]), else the pure-Python h11
        lifespan="on",
        timeout_graceful_shutdown=30,
        access_log=False,
    )
    server = uvicorn.Server(config)
    if port_file is not None:
        tmp = port_file.with_suffix(port_file.suffix + ".tmp")
        tmp.write_text(str(actual))
        tmp.replace(port_file)
    Console(stderr=True, soft_wrap=True).print(f"listening on http://{host}:{actual}")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        raise SystemExit(EXIT_USAGE_ERROR)


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
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the A/B / interleaving / shadow proxy for the experiment in CONFIG. SIGTERM flushes the event log."""
    from abharness.api.app import create_app
    from abharness.config import check_paths, load_config

    try:
        cfg = load_config(config, insecure_dev=True if insecure_dev else None)
        check_paths(cfg)
        _check_remote_control(cfg)
    except AbharnessError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(EXIT_USAGE_ERROR) from None
    if cfg.insecure_dev:
        Console(stderr=True, soft_wrap=True).print("[yellow]warning:[/] insecure development mode: do not expose this server")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_uvicorn(create_app(cfg), host=host or cfg.host, port=cfg.port if port is None else port,
                port_file=port_file, log_level=log_level)


def index_server_command(
    index: Annotated[Path, typer.Option(help="Index directory built by `abharness index build`.")],
    model: Annotated[Optional[str], typer.Option(
        help="Encoder spec ('minilm', a model dir, a hub id); default: the model recorded in the index.")] = None,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = 8100,
    port_file: Annotated[Optional[Path], typer.Option(help="Write the bound port to this file once listening.")] = None,
    max_batch: Annotated[int, typer.Option(help="Largest micro-batch of concurrent queries.")] = 32,
    max_wait_ms: Annotated[float, typer.Option(help="How long a micro-batch waits to fill.")] = 2.0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve one arm's FAISS index + encoder over HTTP, for a proxy arm with `backend: {kind: remote, url: ...}`."""
    from abharness.api.index_server import create_index_server_app
    from abharness.backends.local import open_local_backend

    if not index.is_dir():
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] index directory {str(index)!r} does not exist; "
                                   "build one with `abharness index build`")
        raise typer.Exit(EXIT_USAGE_ERROR)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_index_server_app(
        opener=lambda: open_local_backend(index, model, max_batch=max_batch, max_wait_ms=max_wait_ms)
    )
    run_uvicorn(app, host=host, port=port, port_file=port_file, log_level=log_level)


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``index-server`` to the ``abharness`` CLI."""
    app.command("serve")(serve_command)
    app.command("index-server")(index_server_command)


if __name__ == "__main__":  # pragma: no cover - `python -m abharness.cli.serve serve ...`
    _app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(_app)
    _app(args=sys.argv[1:])
