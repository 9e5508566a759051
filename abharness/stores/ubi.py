"""OpenSearch User Behavior Insights (UBI): export an experiment as UBI documents, import UBI logs into a store.

UBI (https://github.com/opensearch-project/user-behavior-insights, specification 1.x) keeps two indexes:
``ubi_queries`` (one document per search: ``query_id``, ``client_id``, ``user_query``, ``query_attributes``,
``object_id_field``, ``query_response_id``, ``query_response_hit_ids``, ``timestamp``, ``application``) and
``ubi_events`` (one per user action: ``action_name``, ``query_id``, ``client_id``, ``session_id``, ``timestamp``,
``message_type``, ``message``, ``event_attributes`` with ``object.object_id`` / ``object.object_id_field`` and
``position.ordinal``). Files are JSON lines, one document per line, ready for ``_bulk`` into those indexes.

Mapping (export):

- an ``Impression`` is a query: ``query_id`` = impression id, ``client_id`` = unit, ``query_response_hit_ids`` = the
  shown doc ids in order; ``query_attributes.abharness`` keeps what UBI has no field for (experiment, arm, mode,
  k, absolute positions, scores, teams, fingerprints, latency, fallback, error, context, shadow ranking, exact ts);
- a ``Click`` is an event ``action_name: "click"`` with ``object.object_id`` = doc, ``position.ordinal`` = position,
  ``event_attributes.dwell_ms`` and ``event_attributes.abharness`` (team, experiment, arm, exact ts);
- ``Feedback`` "seen" is ``action_name: "impression"`` (UBI's name for a result seen), "dwell" is ``"dwell"``.

Import reads such files back exactly, and also UBI logs written by other tools: the arm is read from
``query_attributes.abharness.arm``, else ``query_attributes[arm_attribute]`` (default ``"arm"``); the unit from
``client_id`` (or ``unit_field``: ``user_id`` / ``session_id``); positions from ``position.ordinal`` or, failing
that, the doc's place in ``query_response_hit_ids``. ``click_through`` counts as a click. Documents that cannot
be mapped (no arm, an event for an unknown query, other actions such as ``add_to_cart``) are counted, not stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from abharness.core.events import Click, Feedback, Impression, ShownResult
from abharness.errors import DataError
from abharness.stores.base import EventStore

__all__ = ["UbiCounts", "export_ubi", "import_ubi", "impression_to_ubi", "click_to_ubi", "feedback_to_ubi"]

APPLICATION = "abharness"
OBJECT_ID_FIELD = "doc_id"
_CLICK_ACTIONS = ("click", "click_through")


@dataclass
class UbiCounts:
    """What an export wrote or an import stored (and skipped, by reason)."""

    queries: int = 0
    clicks: int = 0
    seen: int = 0
    dwell: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _epoch(doc: dict[str, Any], attrs: dict[str, Any]) -> float:
    if isinstance(attrs.get("ts"), (int, float)):
        return float(attrs["ts"])
    raw = doc.get("timestamp")
    if isinstance(raw, (int, float)):
        return float(raw) / 1000.0  # epoch_millis, as the ubi_events mapping allows
    if not isinstance(raw, str):
        raise ValueError("no timestamp")
    dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def _results(rows: Iterable[ShownResult] | None) -> list[dict[str, Any]] | None:
    if rows is None:
        return None
    return [{"doc_id": r.doc_id, "position": r.position, "score": r.score, "team": r.team} for r in rows]


def impression_to_ubi(imp: Impression) -> dict[str, Any]:
    """One ``ubi_queries`` document."""
    return {
        "application": APPLICATION, "query_id": imp.impression_id, "client_id": imp.unit_id,
        "user_query": imp.query, "timestamp": _iso(imp.ts), "object_id_field": OBJECT_ID_FIELD,
        "query_response_id": imp.impression_id, "query_response_hit_ids": [r.doc_id for r in imp.results],
        "query_attributes": {"experiment_id": imp.experiment_id, "arm": imp.arm, "abharness": {
            "experiment_id": imp.experiment_id, "arm": imp.arm, "mode": imp.mode, "k": imp.k, "ts": imp.ts,
            "results": _results(imp.results), "fingerprints": imp.fingerprints, "latency_ms": imp.latency_ms,
            "fallback": imp.fallback, "error": imp.error, "shadow_results": _results(imp.shadow_results),
            "context": imp.context}},
    }


def _event(kind: str, query_id: str, unit: str, ts: float, doc: str, position: int, extra: dict[str, Any],
           message_type: str) -> dict[str, Any]:
    return {"application": APPLICATION, "action_name": kind, "query_id": query_id, "client_id": unit,
            "session_id": unit, "timestamp": _iso(ts), "message_type": message_type, "message": None,
            "event_attributes": {"object": {"object_id": doc, "object_id_field": OBJECT_ID_FIELD},
                                 "position": {"ordinal": position}, **extra}}


def click_to_ubi(c: Click) -> dict[str, Any]:
    """One ``ubi_events`` document (``action_name: click``)."""
    return _event("click", c.impression_id, c.unit_id, c.ts, c.doc_id, c.position,
                  {"dwell_ms": c.dwell_ms, "abharness": {"experiment_id": c.experiment_id, "arm": c.arm,
                                                         "team": c.team, "ts": c.ts}}, "CLICK_THROUGH")


def feedback_to_ubi(f: Feedback) -> dict[str, Any]:
    """One ``ubi_events`` document (``impression`` for a result seen, ``dwell`` for a dwell time)."""
    kind = "impression" if f.kind == "seen" else f.kind
    extra: dict[str, Any] = {"abharness": {"experiment_id": f.experiment_id, "arm": f.arm, "ts": f.ts}}
    if f.kind == "dwell":
        extra["dwell_ms"] = f.value
    return _event(kind, f.impression_id, f.unit_id, f.ts, f.doc_id, f.position, extra, "IMPRESSION"
                  if kind == "impression" else "DWELL")


def _line(out: TextIO, doc: dict[str, Any]) -> None:
    out.write(json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str) + "\n")


def export_ubi(store: EventStore, experiment_id: str, queries_out: TextIO, events_out: TextIO, *,
               since: float | None = None, until: float | None = None) -> UbiCounts:
    """Write the experiment's impressions to ``queries_out`` and its clicks and feedback to ``events_out``."""
    counts = UbiCounts()
    ids: set[str] = set()
    for imp, clicks in store.iter_impressions(experiment_id, since=since, until=until):
        _line(queries_out, impression_to_ubi(imp))
        ids.add(imp.impression_id)
        counts.queries += 1
        for c in clicks:
            _line(events_out, click_to_ubi(c))
            counts.clicks += 1
    for f in store.feedback(experiment_id):
        if f.impression_id in ids:
            _line(events_out, feedback_to_ubi(f))
            counts.seen += f.kind == "seen"
            counts.dwell += f.kind == "dwell"
    return counts


def _read(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{n}: not JSON ({exc.msg}); expected one UBI document per line") from None
            if isinstance(doc, dict) and "_source" in doc:  # a hit or an export of the index, not the document
                doc = doc["_source"]
            if not isinstance(doc, dict):
                raise DataError(f"{path}:{n}: expected a JSON object (a UBI document)")
            yield n, doc


def _shown(rows: list[dict[str, Any]] | None) -> tuple[ShownResult, ...] | None:
    if rows is None:
        return None
    return tuple(ShownResult(str(r["doc_id"]), int(r["position"]), float(r["score"] if r["score"] is not None
                                                                          else float("nan")), r.get("team"))
                 for r in rows)


def _impression(doc: dict[str, Any], experiment_id: str | None, arm_attribute: str, unit_field: str,
                mode: str) -> Impression | None:
    attrs = doc.get("query_attributes") or {}
    ours = attrs.get("abharness") if isinstance(attrs.get("abharness"), dict) else {}
    arm = ours.get("arm") or attrs.get(arm_attribute)
    unit = doc.get(unit_field) or doc.get("client_id")
    if not arm or not unit or not doc.get("query_id"):
        return None
    hits = [str(h) for h in (doc.get("query_response_hit_ids") or [])]
    results = _shown(ours.get("results")) or tuple(ShownResult(h, i + 1, 0.0, str(arm)) for i, h in enumerate(hits))
    return Impression(
        impression_id=str(doc["query_id"]),
        experiment_id=str(experiment_id or ours.get("experiment_id") or attrs.get("experiment_id") or APPLICATION),
        ts=_epoch(doc, ours), unit_id=str(unit), arm=str(arm), mode=ours.get("mode", mode),
        query=str(doc.get("user_query") or ""), k=int(ours.get("k") or max(len(results), 1)), results=results,
        fingerprints=ours.get("fingerprints") or {}, latency_ms=float(ours.get("latency_ms") or 0.0),
        fallback=bool(ours.get("fallback", False)), error=ours.get("error"),
        shadow_results=_shown(ours.get("shadow_results")), context=ours.get("context") or {},
    )


def import_ubi(store: EventStore, queries_path: str | Path, events_path: str | Path | None = None, *,
               experiment_id: str | None = None, arm_attribute: str = "arm", unit_field: str = "client_id",
               mode: str = "ab", batch_size: int = 2000) -> UbiCounts:
    """Store the queries (as impressions) and the events (clicks, seen, dwell) of UBI JSON-lines files."""
    counts = UbiCounts()
    known: dict[str, Impression] = {}
    batch: list[Any] = []

    def flush() -> None:
        if batch:
            store.write_batch(batch)
            batch.clear()

    qpath = Path(queries_path)
    for n, doc in _read(qpath):
        try:
            imp = _impression(doc, experiment_id, arm_attribute, unit_field, mode)
        except (ValueError, TypeError, KeyError) as exc:
            raise DataError(f"{qpath}:{n}: cannot read this UBI query ({type(exc).__name__}: {exc})") from None
        if imp is None:
            counts.skip("query without query_id, client or arm")
            continue
        known[imp.impression_id] = imp
        batch.append(imp)
        counts.queries += 1
        if len(batch) >= batch_size:
            flush()
    flush()
    if events_path is None:
        return counts
    epath = Path(events_path)
    for n, doc in _read(epath):
        action = str(doc.get("action_name") or "")
        imp = known.get(str(doc.get("query_id")))
        if imp is None:
            counts.skip("event for a query not in the file")
            continue
        attrs = doc.get("event_attributes") or {}
        ours = attrs.get("abharness") if isinstance(attrs.get("abharness"), dict) else {}
        doc_id = str(((attrs.get("object") or {}).get("object_id")) or "")
        ordinal = (attrs.get("position") or {}).get("ordinal")
        by_doc = {r.doc_id: r for r in imp.results}
        shown = by_doc.get(doc_id)
        if shown is None:
            counts.skip("event on a document the query did not show")
            continue
        position = int(ordinal) if ordinal is not None else shown.position
        try:
            ts = _epoch(doc, ours)
        except (ValueError, TypeError) as exc:
            raise DataError(f"{epath}:{n}: bad timestamp ({exc})") from None
        if action in _CLICK_ACTIONS:
            dwell = attrs.get("dwell_ms")
            batch.append(Click(imp.impression_id, imp.experiment_id, imp.unit_id, imp.arm, ts, doc_id, position,
                               ours.get("team", shown.team), float(dwell) if dwell is not None else None))
            counts.clicks += 1
        elif action in ("impression", "dwell"):
            kind = "seen" if action == "impression" else "dwell"
            value = attrs.get("dwell_ms") if kind == "dwell" else None
            batch.append(Feedback(imp.impression_id, imp.experiment_id, imp.unit_id, imp.arm, ts, kind, doc_id,
                                  position, float(value) if value is not None else None))
            counts.seen += kind == "seen"
            counts.dwell += kind == "dwell"
        else:
            counts.skip(f"action {action or '(none)'} (not a click, impression or dwell)")
            continue
        if len(batch) >= batch_size:
            flush()
    flush()
    return counts
