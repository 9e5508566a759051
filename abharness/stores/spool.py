"""The spool: where the writer puts accepted events the store cannot take, so none is lost in silence.

Two kinds of append-only files, in a directory of their own (never next to the database: a full or removed
database directory must not take the spool with it):

``spool-<utc>-<pid>.jsonl``
    events the writer spilled from its queue while the store was down past ``spool_after_s`` (or the queue was
    filling up). They are good events; ``load_spool`` writes them back once the store is healthy.
``quarantine-<utc>-<pid>.jsonl``
    events the store refused on their own while it accepted a probe write (a poison event: a value the schema
    rejects). Kept for a person to look at; ``load_spool(..., quarantine=True)`` retries them after a fix.

Each line is one event as JSON (``{"type": "impression" | "click" | "audit", ...fields}``); every append is
flushed and ``fsync``-ed before the writer forgets the events, so a crash after the append loses nothing. A line
cut short by a crash during the append is skipped and counted on load. Loading is idempotent: the stores ignore
duplicates by key (impression id, (impression id, doc id), the audit entry's content hash), and a fully loaded
file is renamed to ``*.jsonl.loaded`` so it is not read twice.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from abharness.core.events import AuditEntry, Click, Event, Feedback, Impression, ShownResult
from abharness.errors import StoreError
from abharness.stores.base import EventStore

__all__ = ["Spool", "SpoolLoadResult", "load_spool", "event_to_json", "event_from_json"]

log = logging.getLogger(__name__)

_TYPES: dict[type, str] = {Impression: "impression", Click: "click", AuditEntry: "audit", Feedback: "feedback"}


def event_to_json(event: Event) -> str:
    """One event as a JSON line (no newline)."""
    data = asdict(event)
    data["type"] = _TYPES[type(event)]
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)


def _results(value: Any) -> tuple[ShownResult, ...] | None:
    if value is None:
        return None
    return tuple(ShownResult(**r) for r in value)


def event_from_json(line: str) -> Event:
    """Parse a line written by ``event_to_json``; raises ``ValueError`` on anything else."""
    try:
        data = json.loads(line)
        kind = data.pop("type")
        if kind == "impression":
            data["results"] = _results(data["results"])
            data["shadow_results"] = _results(data.get("shadow_results"))
            return Impression(**data)
        if kind == "click":
            return Click(**data)
        if kind == "audit":
            return AuditEntry(**data)
        if kind == "feedback":
            return Feedback(**data)
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a spooled event ({type(exc).__name__}: {exc})") from None
    raise ValueError(f"not a spooled event (type {kind!r})")


class Spool:
    """Appends events to fsynced JSON-lines files under ``directory`` (created on first use)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def _append(self, prefix: str, events: Sequence[Event]) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        path = self.directory / f"{prefix}-{stamp}-{os.getpid()}.jsonl"
        data = "".join(event_to_json(e) + "\n" for e in events).encode("utf-8")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:  # make the new file's directory entry durable too
            dfd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:  # pragma: no cover - some file systems refuse fsync on directories
            pass
        return path

    def spill(self, events: Sequence[Event]) -> Path:
        """Append good events the store could not take; raises ``OSError`` when the spool cannot be written."""
        return self._append("spool", events)

    def quarantine(self, events: Sequence[Event]) -> Path:
        """Append events the store refused on their own; raises ``OSError`` when the file cannot be written."""
        return self._append("quarantine", events)

    def files(self, *, quarantine: bool = False) -> list[Path]:
        """Spool (or quarantine) files not loaded yet, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob(("quarantine" if quarantine else "spool") + "-*.jsonl"))

    def pending(self) -> int:
        """Events in spool files not loaded yet (counts lines)."""
        total = 0
        for path in self.files():
            with path.open("rb") as f:
                total += sum(1 for line in f if line.strip())
        return total


@dataclass(frozen=True, slots=True)
class SpoolLoadResult:
    """What ``load_spool`` did: files loaded, events read, newly stored, already present, unreadable lines."""

    files: int
    events: int
    stored: int
    duplicates: int
    unreadable: int


def _read(path: Path) -> Iterator[Event | None]:
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                yield event_from_json(line)
            except ValueError:
                yield None


def load_spool(
    store: EventStore, directory: str | Path, *, quarantine: bool = False, batch_size: int = 500
) -> SpoolLoadResult:
    """Write every spooled event back into ``store`` (idempotent) and mark each loaded file ``.loaded``.

    Raises ``StoreError`` if the store refuses a batch; files loaded before that are marked, the failing file is
    not (loading it again is safe: duplicates are ignored).
    """
    spool = Spool(directory)
    if not spool.directory.is_dir():
        raise StoreError(f"spool directory {str(spool.directory)!r} does not exist; pass the events.spool_dir "
                         "of the proxy's config")
    files = events = stored = duplicates = unreadable = 0
    for path in spool.files(quarantine=quarantine):
        batch: list[Event] = []

        def flush() -> None:
            nonlocal stored, duplicates
            if batch:
                result = store.write_batch(batch)
                stored += result.stored
                duplicates += result.duplicates
                batch.clear()

        for event in _read(path):
            if event is None:
                unreadable += 1
                continue
            events += 1
            batch.append(event)
            if len(batch) >= batch_size:
                flush()
        flush()
        path.rename(path.with_name(path.name + ".loaded"))
        files += 1
        log.info("loaded spool file %s into %s", path.name, getattr(store, "url", store))
    return SpoolLoadResult(files, events, stored, duplicates, unreadable)
