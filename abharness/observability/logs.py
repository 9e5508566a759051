"""Server logs: one handler on stderr, as text lines or as one JSON object per line (``--log-format json``).

uvicorn's own loggers (``uvicorn.error``, and ``uvicorn.access`` for the access log) propagate to the same
handler, so a log shipper sees one format. A JSON line carries ``ts`` (ISO 8601 UTC), ``level``, ``logger``,
``message`` and, where the record has them, structured fields: the access log's ``client``, ``method``, ``path``,
``status``; ``event``/``action``/``actor``/``arm`` for admin changes and fallbacks.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

__all__ = ["configure_logging", "JsonFormatter", "LOG_FORMATS", "TEXT_FORMAT"]

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_EXTRA_FIELDS = ("event", "action", "actor", "arm")
# Libraries that narrate at INFO (which CPU build of FAISS loaded, model paths, each outgoing HTTP request): kept at
# WARNING unless the level is debug, so the server output shows the proxy's own lines.
_CHATTY = ("faiss", "faiss.loader", "sentence_transformers", "httpx", "httpcore", "urllib3", "filelock")


class JsonFormatter(logging.Formatter):
    """One JSON object per record (no newlines inside), with the access log's fields split out."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, http_version, status = record.args
            out.update(client=client, method=method, path=path, http_version=http_version, status=status)
        for name in _EXTRA_FIELDS:
            if hasattr(record, name):
                out[name] = getattr(record, name)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str = "info", fmt: Literal["text", "json"] | str = "text") -> None:
    """Send every log record (ours and uvicorn's) at ``level`` or above to stderr in ``fmt``.

    Raises ``ValueError`` for an unknown format (the CLI validates it first)."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format {fmt!r}; valid: {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _CHATTY:
        logging.getLogger(name).setLevel("DEBUG" if level.upper() == "DEBUG" else max(root.level, logging.WARNING))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
        lg.setLevel(level.upper())
