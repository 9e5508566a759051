"""The wire format of the event stream, shared by every stream sink (NATS JetStream today; Kafka would reuse it).

One message per event: the body is the spool's JSON line (``abharness.stores.spool.event_to_json``), and the
message id is the event's *stable key*, the same key the database stores deduplicate on, so a consumer (or the
broker's own duplicate window) can drop a redelivered or re-published event:

    impression  imp:<impression_id>
    click       clk:<impression_id>:<doc_id>
    feedback    fb:<impression_id>:<kind>:<doc_id>
    audit       aud:<sha of the entry's content>   (``codec.audit_key``)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from abharness.core.events import AuditEntry, Click, Event, Feedback, Impression
from abharness.stores.base import WriteResult
from abharness.stores.codec import audit_key
from abharness.stores.spool import event_from_json, event_to_json

__all__ = ["BatchSink", "decode_event", "encode_event", "event_id"]


class BatchSink(Protocol):
    """What a stream consumer writes into: the write side of ``EventStore`` (SQLite, PostgreSQL) or a
    ``ParquetSink``. ``write_batch`` returns only when the batch is durable (committed, or files fsync-ed and
    renamed), so the consumer may ack it; it raises ``StoreError`` otherwise."""

    url: str

    def write_batch(self, events: Sequence[Event]) -> WriteResult: ...

    def close(self) -> None: ...


def event_id(event: Event) -> str:
    """The stable id of ``event`` (equal for the same event published twice; see the module docstring)."""
    if isinstance(event, Impression):
        return f"imp:{event.impression_id}"
    if isinstance(event, Click):
        return f"clk:{event.impression_id}:{event.doc_id}"
    if isinstance(event, Feedback):
        return f"fb:{event.impression_id}:{event.kind}:{event.doc_id}"
    if isinstance(event, AuditEntry):
        return f"aud:{audit_key(event)}"
    raise TypeError(f"event_id got {type(event).__name__}; expected Impression, Click, Feedback or AuditEntry")


def encode_event(event: Event) -> bytes:
    """The message body of ``event`` (UTF-8 JSON)."""
    return event_to_json(event).encode("utf-8")


def decode_event(body: bytes) -> Event:
    """Parse a message body written by ``encode_event``; raises ``ValueError`` on anything else."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not a stream event (not UTF-8: {exc})") from None
    return event_from_json(text)
